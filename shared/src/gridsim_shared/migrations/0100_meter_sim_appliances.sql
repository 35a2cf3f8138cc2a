-- meter-sim: appliances for non-home energy resources (offices, shops, apartment common areas,
-- industry), so the demo world and users can describe them with catalogue entries instead of hundreds
-- of household items. Power ratings from domain-facts §2-3 (CREST hob; lifts, pumps and EV chargers in
-- apartment common areas) and common equipment sizes. Profiles reuse existing time-of-day shapes.
-- base_kwh_per_min = power_w / 60 000 (the seed's chart convention).
insert into appliances (id, name, aliases, power_w, base_kwh_per_min, role, profile, power_factor, description) values
    (18, 'Elevator (7.5 kW)',            '{"Elevator","Lift"}',                      7500,  0.125,   'consumption', 'pump',     0.85, 'Apartment/office lift motor: morning and evening traffic'),
    (19, 'Commercial Refrigeration',     '{"Display Fridge","Walk-in Cooler"}',      1500,  0.025,   'consumption', 'fridge',   0.85, 'Shop display case or walk-in cooler compressor'),
    (20, 'Commercial HVAC (10 kW)',      '{"HVAC","Rooftop Unit"}',                  10000, 0.16667, 'consumption', 'ac',       0.9,  'Packaged rooftop unit of an office or shop'),
    (21, 'Industrial Motor (15 kW)',     '{"Motor","Industrial Motor"}',             15000, 0.25,    'consumption', 'daytime',  0.85, 'Process motor (pump, compressor, conveyor)'),
    (22, 'Heat Pump (3 kW)',             '{"Heat Pump"}',                            3000,  0.05,    'consumption', 'heating',  0.95, 'Space-heating heat pump (electrified home)'),
    (23, 'Induction Cooktop',            '{"Cooktop","Hob"}',                        2400,  0.04,    'consumption', 'cooking',  0.98, 'CREST hob: 16 min cycles')
on conflict (id) do nothing;

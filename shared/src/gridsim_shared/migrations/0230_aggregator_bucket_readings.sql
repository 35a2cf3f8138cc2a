-- Aggregator (issue 13): a meter's 15m/1h/1d bucket in the shape of a reading, published for readers.
--
-- The rollup tables keep sums (kWh, kVAh, kVARh, Σ V, readings); the gateway turned them into the mean
-- voltage, current and power factor of the bucket itself, twice (GET /meter/stream in Python, the exports
-- in SQL). The formulas are written once here, by the owner of the sums:
--   avg_voltage  = Σ V / readings                (0 with no reading)
--   avg_current  = S / V, S = kVAh over the bucket's hours (the bucket's mean apparent power)
--   power_factor = Σ kWh / Σ kVAh, clipped to [0, 1] as the aggregator's own aggregates are; null at 0 kVAh
-- One view per resolution over the name readers used (a table, or on TimescaleDB the view of 0201).
do $$
declare
    res text;
    width integer;
begin
    for res, width in select * from (values ('15m', 900), ('1h', 3600), ('1d', 86400)) as v (res, width) loop
        execute format(
            $view$
            create or replace view %I as
            select bucket, meter_id, %s::integer as interval_s,
                   consumption_kwh, production_kwh, consumption_kvah, production_kvah, kvarh,
                   case when readings > 0 and voltage_sum <> 0
                        then (consumption_kvah + production_kvah) / (%s / 3600.0) * 1000
                             / (voltage_sum / readings)
                        else 0 end as avg_current,
                   case when readings > 0 then voltage_sum / readings else 0 end as avg_voltage,
                   case when consumption_kvah + production_kvah > 0
                        then least(1.0, greatest(0.0, (consumption_kwh + production_kwh)
                                                      / (consumption_kvah + production_kvah)))
                        end as power_factor,
                   readings
            from %I
            $view$,
            'meter_readings_' || res, width, width, 'meter_data_' || res
        );
    end loop;
end $$;

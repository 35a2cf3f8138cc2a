-- meter-sim: a PV array's orientation per DER (issue 12). Null keeps the default: 20° tilt facing the
-- equator (south in the northern hemisphere, north in the southern). Azimuth in degrees clockwise
-- from north (180 = south, 270 = west); tilt from horizontal. Only production DERs use them.
alter table ders add column if not exists tilt_deg double precision
    check (tilt_deg is null or (tilt_deg >= 0 and tilt_deg <= 90));
alter table ders add column if not exists azimuth_deg double precision
    check (azimuth_deg is null or (azimuth_deg >= 0 and azimuth_deg < 360));

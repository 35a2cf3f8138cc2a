"""SQL of the meter-sim service: psycopg calls that return domain objects."""

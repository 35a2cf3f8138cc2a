"""SQL of the aggregator service: psycopg calls that return domain objects."""

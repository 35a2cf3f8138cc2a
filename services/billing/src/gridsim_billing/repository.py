"""SQL of the billing service: psycopg calls that return domain objects."""

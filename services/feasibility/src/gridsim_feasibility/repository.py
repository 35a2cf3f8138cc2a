"""SQL of the feasibility service: psycopg calls that return domain objects."""

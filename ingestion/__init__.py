"""Sources, canonical schema, raw landing and the DuckDB warehouse."""

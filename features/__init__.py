"""Feature computation (DuckDB SQL) and the Feast feature repo."""

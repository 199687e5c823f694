"""Pipeline configs (YAML) and the factory that turns them into DAGs."""

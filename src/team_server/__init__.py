"""`make server`: the team's MLflow server with accounts on PostgreSQL, over HTTPS; no stage imports it."""

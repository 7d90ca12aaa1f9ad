"""What the Airflow adapters share besides the hook and the operators: report sinks, row sources, template
parsing, SQL rows, the snapshot store, lineage, and the API-server plugin. Airflow-only; import the modules
directly."""

"""Notebook pipelines: definitions (``pipeline.yaml`` or one tagged notebook), a parallel,
cached DAG runner on papermill with the nbmlops engine, and DAG rendering."""

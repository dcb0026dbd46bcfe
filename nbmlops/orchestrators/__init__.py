"""Export of a pipeline to real orchestrators: an Airflow 3 DAG file (:mod:`.airflow`) and a
Kubeflow Pipelines v2 spec (:mod:`.kfp`). Both turn every step into a task that runs
``nbmlops pipeline step`` on a worker, so the lineage of an orchestrated run looks like a local
``nbmlops pipeline run``'s (one parent run, one child run per step). Core: no click, no widgets;
neither Airflow nor kfp is imported by nbmlops unless a kfp export is asked for. See
``docs/orchestrators.md``.
"""

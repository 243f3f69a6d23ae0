"""Workers: the in-process worker of the embedded default and the Celery worker."""

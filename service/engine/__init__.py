"""The job runner's parts: base models, checkpoints loading, generation, the job."""

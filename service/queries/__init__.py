"""Queries written once per resource: the routers, the job, the decision store and the
sweep view all read through these. Plain functions over a session; they never commit."""

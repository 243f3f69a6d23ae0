"""``tunegate``: the public import name for use from training scripts.

The application lives in ``service`` (server, CLI, engine) and ``evaluators`` (scorers);
this package only re-exports what a training script needs::

    from tunegate.integrations import TunegateCallback
"""

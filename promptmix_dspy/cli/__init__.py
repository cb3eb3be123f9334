"""The ``promptmix`` command line: the only place that turns flags into config. May import every layer;
heavy imports live inside commands."""

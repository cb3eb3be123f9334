"""``python -m promptmix_dspy.cli`` (and ``accelerate launch -m promptmix_dspy.cli train ...``)."""

from promptmix_dspy.cli.app import main

main()

"""Pure loss functions, each checked against a numpy reference in tests/."""

"""Reading labelled comments, training the model families, evaluating, logging to MLflow, promoting."""

"""The contract between training and serving: label schema, text normalisation and the MLflow pyfunc."""

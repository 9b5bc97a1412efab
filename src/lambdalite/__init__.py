"""lambdalite: serverless deep-learning inference.

Bundle a model, serve it as an AWS Lambda function, run it locally exactly as Lambda does,
and ship it. Importing the package loads nothing heavy; import the module you need.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

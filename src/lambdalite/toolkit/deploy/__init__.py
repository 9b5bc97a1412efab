"""Ship a model to AWS Lambda: build the artifact, write the template, deploy, read logs, destroy.

    target.py    Lambda's Python runtimes and architectures (which wheels load where)
    wheels.py    the pinned runtime dependencies, as wheels for the Lambda platform
    slim.py      deleting what the function never uses, by named rules
    package.py   lambdalite's function modules and the model bundle
    artifact.py  reproducible zips and the size of each package inside
    build.py     the build: staging, slimming, bytecode, zips, template; the report and the limits
    image.py     the container image recipe (Dockerfile and context)
    template.py  the AWS SAM template, and its expansion to plain CloudFormation
    plan.py      deploy and destroy as pure plans of frozen steps
    apply.py     the only module that talks to AWS (boto3)
    commands.py  the `build`, `deploy`, `destroy` and `logs` commands

Nothing here runs inside the function, and nothing here is shipped in it.
"""

__all__: list[str] = []

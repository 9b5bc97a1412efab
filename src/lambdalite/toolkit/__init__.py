"""The toolkit: everything around the function that never runs inside it.

`cli` (the `lambdalite` command), `convert` (import, export, int8), `local` (the local Lambda,
its API Gateway and `invoke-local`), `deploy` (build, deploy, logs, destroy) and `zoo` (the
zoo's builders). A function zip ships none of it (`toolkit.deploy.package`).
"""

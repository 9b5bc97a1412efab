"""The local Lambda: Invoke API, Runtime API, instances and Lambda's limits (`lambdalite serve`).

    protocol.py     pure: routes, headers, error envelopes, log lines, billing, prices
    messages.py     the records passed between the modules
    environment.py  Lambda's environment variables, the user's, SAM's env.json
    http.py         a small asyncio HTTP/1.1 server (keep-alive, chunked bodies)
    sandbox.py      runs inside each instance process before awslambdaric: /tmp, read-only fs, rlimits
    process.py      one runtime process: spawn, output pipe, pidfd, memory, kill
    instances.py    one instance: its process, its Runtime API listener, its limits
    server.py       the Invoke API and the scheduler; `LambdaServer.invoke` is the in-process seam
    platform.py     the platform's log lines in Lambda's Text and JSON formats, log levels
    cpu.py          CPU time by memory size: a governor stopping and continuing instances
    metrics.py      what happened, counted: Prometheus /metrics and the dashboard's data
    dashboard.py    the live dashboard at /_lambdalite/ (dashboard.html, self-contained)
    control.py      GetFunction(Configuration) and UpdateFunctionConfiguration, for boto3 and `tune`
    client.py       a plain-HTTP Invoke API client
    commands.py     `lambdalite serve` and `lambdalite invoke`

Importing this package loads nothing; `sandbox` runs inside the function and stays tiny.
"""

__all__: list[str] = []

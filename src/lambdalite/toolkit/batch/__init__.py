"""`lambdalite batch INPUT -o OUTPUT`: every image of a folder, a list or an S3 prefix through the function.

    tasks = list_tasks("photos/")                          # sources.py: a folder, a file list, s3://
    sink = open_sink("labels.jsonl", model)                # sinks.py: JSONL or s3://, and what is done
    invoker = Invoker.connect(endpoint=..., function="cats")   # invoker.py: the Invoke API, retries
    summary = run_batch(tasks, sink, invoker, Options(concurrency=8))   # run.py: fan out, progress
    print(summary.render())                                # report.py: done, failures, p50/p99, cost

Toolkit only (never shipped); boto3 talks to the Invoke API of `lambdalite serve` or of AWS.
"""

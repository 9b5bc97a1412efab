"""The function: what runs inside Lambda for each event (`app.Function`), and its parts.

`events` recognises the front door of an event, `web` is HTTP as the function sees it, `inputs`
reads what a request asks for, `routes` is the routing machinery, `docs` the page and OpenAPI,
`oip` the Open Inference Protocol, `urls` fetches image URLs safely, `logs` writes its records.
"""

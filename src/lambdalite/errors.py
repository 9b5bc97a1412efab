"""Every error lambdalite raises on purpose, in one tree.

    LambdaliteError                 base: one-line message in str(), exit_code 1, HTTP 500
    ├── InternalError               an unexpected failure in the function; details only in its logs
    ├── ConfigError                 an environment variable (or setting) has a value that is not allowed
    ├── UsageError                  the CLI was called wrongly (exit code 2)
    ├── ModelNotFoundError          a model reference names nothing we can find
    ├── SourceError                 a model source (file, https, s3) failed: missing, denied, refused
    │   └── SourceTimeoutError      a model download timed out
    ├── BundleError                 a bundle or its manifest is invalid (the message names the key)
    │   ├── ChecksumError           a file's sha256 differs from the manifest or the pinned digest
    │   └── UnsafeArchiveError      an archive tries to escape, link, or is too big
    ├── TrustError                  a bundle carries code and the caller did not trust it
    ├── PipelineError               a bundle's own code failed on import or at run time, or broke its contract
    ├── EngineError                 engine unknown, framework missing, model failed to load or run
    ├── InputError                  the request's input is unusable (HTTP 400)
    │   ├── EventError              the event or body is malformed or carries no input
    │   ├── ImageDecodeError        not an image, truncated, empty, unsupported format
    │   ├── ImageTooLargeError      more pixels than the decompression-bomb guard allows
    │   ├── PayloadTooLargeError    body over the size cap (HTTP 413)
    │   └── UnsupportedMediaTypeError  a content type we cannot read (HTTP 415)
    ├── RouteError                  the request names no route, or a method the route has not
    │   ├── RouteNotFoundError      no such path (HTTP 404)
    │   └── MethodNotAllowedError   the path exists, the method does not (HTTP 405)
    ├── FetchError                  fetching an image URL failed (HTTP 502)
    │   ├── URLRefusedError         the URL is not allowed: scheme, private address (HTTP 422)
    │   └── FetchTimeoutError       the fetch timed out (HTTP 504)
├── StorageError                reading an image from S3 or writing a result there failed: missing, denied (HTTP 502)
│   └── StorageTimeoutError     S3 did not answer in time (HTTP 504)
├── ThrottledError              S3 or an image host said slow down or was briefly unavailable; retry (HTTP 503)
├── BatchError                  some items of a batch event failed in a way worth retrying the event
    ├── EmulatorError               the local Lambda could not do what was asked
    │   └── InvokeRefusedError      the Invoke API refused a request (a service error, not a function error)
    │       ├── FunctionNotFoundError        404 ResourceNotFoundException
    │       ├── InvalidRequestContentError   400 InvalidRequestContentException
    │       ├── InvalidParameterValueError   400 InvalidParameterValueException
    │       ├── RequestTooLargeError         413 RequestEntityTooLargeException
    │       ├── TooManyRequestsError         429 TooManyRequestsException
    │       ├── SnapStartError               400 SnapStartException (an after-restore hook failed)
    │       └── SnapStartTimeoutError        408 SnapStartTimeoutException (the restore ran past 10 s)
    ├── BuildError                  an artifact could not be built or is over Lambda's limits
    ├── DeployError                 deploy, logs or destroy failed
    └── TuneError                   a memory sweep could not go on (a configuration refused, no REPORT)

Identity lives in the class: `status` is the HTTP status a gateway answer carries and
`exit_code` what the CLI exits with. Inside a Lambda function the class name is what the
runtime reports as `errorType`, so the names are part of the wire contract.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BatchError",
    "BuildError",
    "ConfigError",
    "InternalError",
    "MethodNotAllowedError",
    "RouteError",
    "RouteNotFoundError",
    "BundleError",
    "ChecksumError",
    "DeployError",
    "EmulatorError",
    "EngineError",
    "EventError",
    "FetchError",
    "FetchTimeoutError",
    "FunctionNotFoundError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "InputError",
    "InvalidParameterValueError",
    "InvalidRequestContentError",
    "InvokeRefusedError",
    "LambdaliteError",
    "ModelNotFoundError",
    "PayloadTooLargeError",
    "PipelineError",
    "RequestTooLargeError",
    "SnapStartError",
    "SnapStartTimeoutError",
    "SourceError",
    "SourceTimeoutError",
    "StorageError",
    "StorageTimeoutError",
    "ThrottledError",
    "TooManyRequestsError",
    "TrustError",
    "TuneError",
    "URLRefusedError",
    "UnsafeArchiveError",
    "UnsupportedMediaTypeError",
    "UsageError",
]


class LambdaliteError(Exception):
    """Base of every error lambdalite raises deliberately; the message is one line for a human."""

    status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def type_name(self) -> str:
        """The name clients see, in `{"error": {"type": ...}}` and as Lambda's `errorType`."""
        return type(self).__name__


class InternalError(LambdaliteError):
    """An unexpected failure inside the function; details are in the function's logs only."""


class ConfigError(LambdaliteError):
    """Raised at init when a setting (an environment variable) has a value that is not allowed;
    the message names the variable, the value and what is allowed."""

    exit_code = 2


class UsageError(LambdaliteError):
    """Raised by the CLI for arguments that make no sense together."""

    exit_code = 2


class ModelNotFoundError(LambdaliteError):
    """Raised when a model reference is neither a zoo name, a bundle, nor a supported URL."""


class SourceError(LambdaliteError):
    """Raised when a model source cannot be read: a missing object, access denied, a timeout."""


class SourceTimeoutError(SourceError, TimeoutError):
    """Raised when connecting to a model source or reading from it took longer than allowed."""


class BundleError(LambdaliteError):
    """Raised when a bundle is missing files or its manifest has a bad or missing key."""


class ChecksumError(BundleError):
    """Raised when a file's sha256 does not match the digest it was pinned to."""


class UnsafeArchiveError(BundleError):
    """Raised when an archive holds absolute paths, `..`, links or devices, or is too big."""


class TrustError(LambdaliteError):
    """Raised when a bundle carries its own code and running it was not explicitly allowed."""


class PipelineError(LambdaliteError):
    """Raised when a trusted bundle's `pipeline.py` fails on import or while running, or returns
    something other than its interface promises (the message names the hook)."""


class EngineError(LambdaliteError):
    """Raised when an engine is unknown, its framework is not installed, or the model fails."""


class InputError(LambdaliteError):
    """Raised when a request's input cannot be used; the client should fix the request."""

    status = 400


class EventError(InputError):
    """Raised when an event or request body is malformed or carries no usable input."""


class ImageDecodeError(InputError):
    """Raised when bytes are not a readable image (empty, truncated, unknown or corrupt)."""


class ImageTooLargeError(InputError):
    """Raised when an image has more pixels than the decompression-bomb guard allows."""


class PayloadTooLargeError(InputError):
    """Raised when a body or download is larger than the configured cap."""

    status = 413


class UnsupportedMediaTypeError(InputError):
    """Raised when a request's content type is one we cannot read."""

    status = 415


class RouteError(LambdaliteError):
    """Raised when a request's path or method is not one the function serves."""

    status = 404


class RouteNotFoundError(RouteError):
    """Raised when no route has the request's path."""

    status = 404


class MethodNotAllowedError(RouteError):
    """Raised when the path is a route but not for the request's method; `allow` lists its methods."""

    status = 405

    def __init__(self, message: str, *, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allow = allow


class FetchError(LambdaliteError):
    """Raised when an image URL could not be fetched (connection failed, bad status)."""

    status = 502


class URLRefusedError(FetchError):
    """Raised before any connection when a URL is not allowed (scheme, private address)."""

    status = 422


class FetchTimeoutError(FetchError, TimeoutError):
    """Raised when fetching an image URL took longer than allowed."""

    status = 504


class StorageError(LambdaliteError):
    """Raised when an image cannot be read from S3, or a result cannot be written there
    (a missing object, access denied); the message names the object and what the role needs."""

    status = 502


class StorageTimeoutError(StorageError, TimeoutError):
    """Raised when S3 did not answer a read or a write in time."""

    status = 504


class ThrottledError(LambdaliteError):
    """Raised when S3 or an image host asked us to slow down (SlowDown, 429, 503) or was briefly
    unavailable; the same request later should work, so batch sources retry it."""

    status = 503


class BatchError(LambdaliteError):
    """Raised for an S3, SNS or EventBridge event (invoked asynchronously) when some of its images
    failed in a way worth retrying, so that Lambda retries the event; the message lists them."""


class EmulatorError(LambdaliteError):
    """Raised when the local Lambda cannot start or run an instance as configured."""


class InvokeRefusedError(EmulatorError):
    """Raised when the Invoke API refuses a request; `shape` is the AWS error name on the wire.

    These are service errors (4xx, `x-amzn-ErrorType: <shape>`), never function errors, which are
    answers (200 with `X-Amz-Function-Error`).
    """

    shape: ClassVar[str] = "ServiceException"
    type_field: ClassVar[str | None] = "Service"  # the body's "Type": "User" or "Service"
    message_field: ClassVar[str] = "message"  # the shape's member name for the message

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class FunctionNotFoundError(InvokeRefusedError):
    """Raised when the invoked name, ARN or qualifier names no function served here."""

    status = 404
    shape = "ResourceNotFoundException"
    type_field = "User"
    message_field = "Message"


class InvalidRequestContentError(InvokeRefusedError):
    """Raised when an invoke payload is not JSON, or a client context is not base64 JSON."""

    status = 400
    shape = "InvalidRequestContentException"
    type_field = "User"


class InvalidParameterValueError(InvokeRefusedError):
    """Raised for a malformed function name, qualifier or invocation header."""

    status = 400
    shape = "InvalidParameterValueException"
    type_field = "User"


class RequestTooLargeError(InvokeRefusedError):
    """Raised when a payload is over 6 MB (synchronous) or 1 MB (asynchronous)."""

    status = 413
    shape = "RequestEntityTooLargeException"  # what the wire carries; the model calls it RequestTooLargeException
    type_field = None


class TooManyRequestsError(InvokeRefusedError):
    """Raised when every allowed instance is busy and the server does not queue (HTTP 429)."""

    status = 429
    shape = "TooManyRequestsException"
    type_field = "User"


class SnapStartError(InvokeRefusedError):
    """Raised when a restored instance's after-restore hook failed (or it died restoring)."""

    status = 400
    shape = "SnapStartException"
    type_field = "User"
    message_field = "Message"


class SnapStartTimeoutError(InvokeRefusedError):
    """Raised when a restore (the runtime and its after-restore hooks) ran past Lambda's 10 s."""

    status = 408
    shape = "SnapStartTimeoutException"
    type_field = "User"
    message_field = "Message"


class BuildError(LambdaliteError):
    """Raised when a deployment artifact cannot be built or breaks Lambda's size limits."""


class DeployError(LambdaliteError):
    """Raised when deploy, logs or destroy cannot complete."""


class TuneError(LambdaliteError):
    """Raised when `lambdalite tune` cannot go on: the function refused a configuration, or an
    invocation's log tail had no REPORT."""

"""Model bundles: a manifest, the model file(s), labels, in a directory or a `.tar.gz`.

A bundle is a directory (or a reproducible `.tar.gz` of one) holding `lambdalite.json`::

    {
      "schema_version": 1,
      "name": "efficientnet-lite0", "version": "1.0.0",
      "task": "image-classification",
      "engine": "onnxruntime",
      "files": {"model":  {"path": "model.onnx", "sha256": "..."},
                "labels": {"path": "labels.txt", "sha256": "..."}},
      "input":  {"size": [224, 224], "layout": "NCHW", "resize": 256, "crop": "center",
                 "scale": 0.00392156862745098, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                 "channel_order": "RGB", "dtype": "float32"},
      "output": {"kind": "logits", "top_k": 5},
      "options": {}, "metadata": {}
    }

`files` maps a *role* to a file. Each task names the roles it needs: classification needs
`model` and `labels`; image-to-text needs `encoder`, `decoder` and `vocab`; any bundle may add
`pipeline` (its own code, run only when trusted). `options` holds task settings (for example
generation lengths). An image-to-text bundle whose decoder keeps a key/value cache says so in
an optional `decoder` section (`DecoderSpec`). A bad manifest raises `BundleError` naming the
offending key.
"""

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

from lambdalite.errors import BundleError, ChecksumError

if TYPE_CHECKING:
    import tarfile

__all__ = [
    "ENGINES",
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "TASKS",
    "Bundle",
    "DecoderSpec",
    "FileRef",
    "InputSpec",
    "Manifest",
    "OutputSpec",
    "file_sha256",
    "open_bundle",
    "pack_bundle",
    "write_bundle",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "lambdalite.json"
TASKS: dict[str, tuple[str, ...]] = {
    "image-classification": ("model", "labels"),
    "image-to-text": ("encoder", "decoder", "vocab"),
}
ENGINES = ("onnxruntime", "litert", "torchscript")
Layout = Literal["NCHW", "NHWC"]
Resample = Literal["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"]
RESAMPLE: tuple[Resample, ...] = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Reader:
    """Reads one JSON object and names the key path in every complaint."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise BundleError(f"{MANIFEST_NAME}: {path or 'top level'}: expected an object")
        self.data: dict[str, Any] = data
        self.path = path

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"{MANIFEST_NAME}: {self._key(key)}: {problem}")

    def get(self, key: str, default: Any = ..., *, required: bool = True) -> Any:
        if key in self.data:
            return self.data[key]
        if default is ... and required:
            raise self.fail(key, "missing")
        return None if default is ... else default

    def str_(self, key: str, default: Any = ..., choices: Iterable[str] | None = None) -> Any:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(sorted(choices))}")
        return value

    def int_(self, key: str, default: Any = ..., minimum: int = 1) -> Any:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def float_(self, key: str, default: Any = ...) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        return float(value)

    def floats(self, key: str, n: int, default: Any = ..., positive: bool = False) -> tuple[float, ...]:
        value = self.get(key, default)
        if not isinstance(value, list | tuple) or len(value) != n:
            raise self.fail(key, f"expected a list of {n} numbers, got {value!r}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise self.fail(key, f"expected a list of {n} numbers, got {value!r}")
        if positive and not all(v > 0 for v in value):
            raise self.fail(key, f"expected positive numbers, got {value!r}")
        return tuple(float(v) for v in value)

    def obj(self, key: str, default: Any = ...) -> "_Reader":
        return _Reader(self.get(key, default), self._key(key))

    def check_known(self, known: Iterable[str]) -> None:
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            raise self.fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")


class FileRef(NamedTuple):
    """One file of the bundle, relative to its root, with the sha256 of its bytes."""

    path: str
    sha256: str

    @classmethod
    def from_dict(cls, r: _Reader) -> "FileRef":
        r.check_known(("path", "sha256"))
        path = r.str_("path")
        if path.startswith("/") or ".." in Path(path).parts or "\\" in path:
            raise r.fail("path", f"must be a relative path inside the bundle, got {path!r}")
        sha = r.str_("sha256")
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise r.fail("sha256", "expected 64 lowercase hex digits")
        return cls(path, sha)


class InputSpec(NamedTuple):
    """How an image becomes the model's input tensor.

    The shorter side is resized to `resize` (or straight to `size` when `resize` is None),
    then `crop` takes the centre `size` = (height, width). Pixels are multiplied by `scale`,
    then `(x - mean) / std` per channel, in `channel_order`, laid out as `layout`.

    `geometry` says where that centre is: `fractional` (the default) scales exactly and takes
    the centre at fractional pixels; `whole-pixel` resizes to whole-pixel sides (the long side
    rounded down) and starts the crop at whole pixels (rounded down), as Hugging Face image
    processors do. `jpeg_draft` (the default) lets a JPEG much larger than needed decode at
    1/2, 1/4 or 1/8 scale, which is faster but gives slightly different pixels than a full
    decode; bundles that must match another library's preprocessing exactly turn it off. Both
    are written to the manifest only when not the default, so older manifests read the same.
    """

    size: tuple[int, int] = (224, 224)
    layout: Layout = "NCHW"
    resize: int | None = 256
    crop: Literal["center", "none"] = "center"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    dtype: Literal["float32", "uint8", "int8"] = "float32"
    resample: Resample = "bilinear"
    name: str | None = None
    geometry: Literal["fractional", "whole-pixel"] = "fractional"
    jpeg_draft: bool = True

    @classmethod
    def from_dict(cls, r: _Reader) -> "InputSpec":
        r.check_known(
            (
                *("size", "layout", "resize", "crop", "scale", "mean", "std", "channel_order", "dtype", "resample"),
                *("name", "geometry", "jpeg_draft"),
            )
        )
        size = r.get("size")
        if (
            not isinstance(size, list | tuple)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 8192 for v in size)
        ):
            raise r.fail("size", f"expected [height, width] in pixels, got {size!r}")
        d = cls()
        jpeg_draft = r.get("jpeg_draft", True)
        if not isinstance(jpeg_draft, bool):
            raise r.fail("jpeg_draft", f"expected true or false, got {jpeg_draft!r}")
        spec = cls(
            size=(size[0], size[1]),
            layout=r.str_("layout", d.layout, ("NCHW", "NHWC")),
            resize=r.int_("resize", None),
            crop=r.str_("crop", d.crop, ("center", "none")),
            scale=r.float_("scale", d.scale),
            mean=cast(tuple[float, float, float], r.floats("mean", 3, list(d.mean))),
            std=cast(tuple[float, float, float], r.floats("std", 3, list(d.std), positive=True)),
            channel_order=r.str_("channel_order", d.channel_order, ("RGB", "BGR")),
            dtype=r.str_("dtype", d.dtype, ("float32", "uint8", "int8")),
            resample=r.str_("resample", d.resample, RESAMPLE),
            name=r.str_("name", None),
            geometry=r.str_("geometry", d.geometry, ("fractional", "whole-pixel")),
            jpeg_draft=jpeg_draft,
        )
        if spec.geometry == "whole-pixel" and spec.crop == "center" and spec.resize is not None:
            if spec.resize < max(spec.size):
                raise r.fail("resize", f"{spec.resize} is smaller than the crop {spec.size[0]}x{spec.size[1]}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "size": list(self.size),
            "layout": self.layout,
            "resize": self.resize,
            "crop": self.crop,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "dtype": self.dtype,
            "resample": self.resample,
        }
        if self.name is not None:
            out["name"] = self.name
        if self.geometry != "fractional":
            out["geometry"] = self.geometry
        if not self.jpeg_draft:
            out["jpeg_draft"] = False
        return out


class OutputSpec(NamedTuple):
    """What the model's (first) output holds: raw `logits` (softmax applied) or `probabilities`."""

    kind: Literal["logits", "probabilities"] = "logits"
    top_k: int = 5
    name: str | None = None

    @classmethod
    def from_dict(cls, r: _Reader) -> "OutputSpec":
        r.check_known(("kind", "top_k", "name"))
        return cls(
            kind=r.str_("kind", "logits", ("logits", "probabilities")),
            top_k=r.int_("top_k", 5),
            name=r.str_("name", None),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "top_k": self.top_k}
        if self.name is not None:
            out["name"] = self.name
        return out


class DecoderSpec(NamedTuple):
    """An image-to-text decoder with a key/value cache, its inputs and outputs named.

    Each call takes the new tokens (`tokens`, an integer input of shape (B, T): the whole
    prompt on the first call, then the last token), the cache so far (each `past` pair's
    input, empty along `past_axis` on the first call) and the `context` (inputs fed the
    encoder's outputs of the same name, constant while decoding, such as the cross-attention
    keys and values). It returns `logits` for the next token and, for each `past` pair, the
    cache grown by T along `past_axis` (its output). So a step costs the same at the 20th token
    as at the first: the prefix is never run again.

        "decoder": {"kind": "past", "tokens": "input_ids", "logits": "logits", "past_axis": 2,
                    "past": [{"input": "past_0_key", "output": "present_0_key"}, ...],
                    "context": ["cross_0_key", ...]}

    Without this section a decoder follows the step convention (`lambdalite.tasks.captioning`).
    """

    tokens: str
    logits: str
    past: tuple[tuple[str, str], ...]
    context: tuple[str, ...] = ()
    past_axis: int = 2
    kind: Literal["past"] = "past"

    @classmethod
    def from_dict(cls, r: "_Reader") -> "DecoderSpec":
        r.check_known(("kind", "tokens", "logits", "past", "past_axis", "context"))
        kind = r.str_("kind", choices=("past",))
        tokens = r.str_("tokens")
        logits = r.str_("logits")
        past_axis = r.int_("past_axis", 2, minimum=1)
        raw_past = r.get("past")
        if not isinstance(raw_past, list) or not raw_past:
            raise r.fail("past", f'expected a non-empty list of {{"input", "output"}} pairs, got {raw_past!r}')
        past = []
        for i, item in enumerate(raw_past):
            pair = _Reader(item, r._key(f"past[{i}]"))
            pair.check_known(("input", "output"))
            past.append((pair.str_("input"), pair.str_("output")))
        raw_context = r.get("context", [])
        if not isinstance(raw_context, list) or not all(isinstance(c, str) and c for c in raw_context):
            raise r.fail("context", f"expected a list of decoder input names, got {raw_context!r}")
        inputs = [tokens, *(i for i, _ in past), *raw_context]
        outputs = [logits, *(o for _, o in past)]
        for names, what in ((inputs, "input"), (outputs, "output")):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise r.fail("past", f"the decoder {what} {twice[0]!r} is named twice")
        return cls(tokens, logits, tuple(past), tuple(raw_context), past_axis, kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tokens": self.tokens,
            "logits": self.logits,
            "past": [{"input": i, "output": o} for i, o in self.past],
            "past_axis": self.past_axis,
            "context": list(self.context),
        }


class Manifest(NamedTuple):
    """The parsed, validated `lambdalite.json`."""

    name: str
    version: str
    task: str
    engine: str
    files: Mapping[str, FileRef]
    input: InputSpec = InputSpec()
    output: OutputSpec = OutputSpec()
    options: Mapping[str, Any] = _EMPTY
    metadata: Mapping[str, Any] = _EMPTY
    schema_version: int = SCHEMA_VERSION
    decoder: DecoderSpec | None = None

    @classmethod
    def from_dict(cls, data: Any) -> "Manifest":
        r = _Reader(data, "")
        r.check_known(
            (
                "schema_version",
                "name",
                "version",
                "task",
                "engine",
                "files",
                "input",
                "output",
                "options",
                "metadata",
                "decoder",
            )
        )
        schema = r.int_("schema_version")
        if schema != SCHEMA_VERSION:
            raise r.fail(
                "schema_version",
                f"version {schema} is not supported (this lambdalite reads {SCHEMA_VERSION}); upgrade lambdalite",
            )
        task = r.str_("task", choices=TASKS)
        files_r = r.obj("files")
        files = {role: FileRef.from_dict(files_r.obj(role)) for role in files_r.data}
        for role in TASKS[task]:
            if role not in files:
                raise files_r.fail(role, f"missing (task {task} needs the files {', '.join(TASKS[task])})")
        options = r.get("options", {})
        metadata = r.get("metadata", {})
        if not isinstance(options, dict):
            raise r.fail("options", "expected an object")
        if not isinstance(metadata, dict):
            raise r.fail("metadata", "expected an object")
        decoder = None
        if "decoder" in r.data:
            if task != "image-to-text":
                raise r.fail("decoder", f"only image-to-text bundles have a decoder section (this is {task})")
            decoder = DecoderSpec.from_dict(r.obj("decoder"))
        return cls(
            schema_version=schema,
            name=r.str_("name"),
            version=r.str_("version"),
            task=task,
            engine=r.str_("engine", choices=ENGINES),
            files=files,
            input=InputSpec.from_dict(r.obj("input")),
            output=OutputSpec.from_dict(r.obj("output", {})),
            options=options,
            metadata=metadata,
            decoder=decoder,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "engine": self.engine,
            "files": {role: {"path": f.path, "sha256": f.sha256} for role, f in sorted(self.files.items())},
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "options": dict(self.options),
            "metadata": dict(self.metadata),
        }
        if self.decoder is not None:  # only then: other manifests read and write as they always did
            out["decoder"] = self.decoder.to_dict()
        return out

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()


class Bundle(NamedTuple):
    """A bundle directory on disk and its manifest."""

    root: Path
    manifest: Manifest

    def path(self, role: str) -> Path:
        try:
            return self.root / self.manifest.files[role].path
        except KeyError:
            raise BundleError(f"{MANIFEST_NAME}: files.{role}: missing") from None

    def read(self, role: str, *, verify: bool = True) -> bytes:
        """Read a file by role, checking its sha256 against the manifest."""
        data = self._read_raw(role)
        if verify:
            self._check(role, hashlib.sha256(data).hexdigest())
        return data

    def read_deferred(self, role: str) -> tuple[bytes, Callable[[], None]]:
        """Read a file and start checking its sha256 on another thread.

        Call the returned function before trusting anything derived from the bytes: it waits
        for the digest and raises `ChecksumError` on a mismatch. hashlib releases the GIL, so
        the check overlaps whatever the caller does meanwhile (a model's session creation).
        """
        data = self._read_raw(role)
        result: list[str] = []
        worker = threading.Thread(target=lambda: result.append(hashlib.sha256(data).hexdigest()), daemon=True)
        worker.start()

        def check() -> None:
            worker.join()
            self._check(role, result[0])

        return data, check

    def _read_raw(self, role: str) -> bytes:
        path = self.path(role)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise BundleError(f"bundle {self.root}: cannot read {role} file {path.name}: {exc.strerror}") from exc

    def _check(self, role: str, actual: str) -> None:
        expected = self.manifest.files[role].sha256
        if actual != expected:
            raise ChecksumError(
                f"bundle {self.root}: {self.manifest.files[role].path} is corrupt: sha256 "
                f"{actual[:12]}… does not match the manifest's {expected[:12]}…"
            )

    def read_lines(self, role: str) -> list[str]:
        try:
            text = self.read(role).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError(f"bundle {self.root}: {self.manifest.files[role].path} is not UTF-8 text") from exc
        return [line.rstrip("\r") for line in text.split("\n") if line.strip()]

    def verify(self) -> None:
        for role in self.manifest.files:
            self.read(role)


def open_bundle(root: Path) -> "Bundle":
    """Open a bundle directory; the manifest is validated, the files only when read."""
    manifest_path = root / MANIFEST_NAME
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{root} is not a bundle: it has no {MANIFEST_NAME}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{MANIFEST_NAME} in {root} is not valid JSON: {exc}") from exc
    return Bundle(root, Manifest.from_dict(data))


def write_bundle(
    root: Path,
    *,
    name: str,
    version: str,
    task: str,
    engine: str,
    files: Mapping[str, Path | bytes],
    input: InputSpec,
    output: OutputSpec | None = None,
    options: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    filenames: Mapping[str, str] | None = None,
    decoder: DecoderSpec | None = None,
) -> "Bundle":
    """Create a bundle directory from model files (paths or bytes), computing every checksum.

    `filenames` chooses each role's file name in the bundle (default: the source's name, or
    the role for bytes).
    """
    root.mkdir(parents=True, exist_ok=True)
    refs: dict[str, FileRef] = {}
    for role, src in sorted(files.items()):
        data = src if isinstance(src, bytes) else src.read_bytes()
        name_in_bundle = (filenames or {}).get(role) or (role if isinstance(src, bytes) else src.name)
        (root / name_in_bundle).write_bytes(data)
        refs[role] = FileRef(name_in_bundle, hashlib.sha256(data).hexdigest())
    manifest = Manifest(
        name=name,
        version=version,
        task=task,
        engine=engine,
        files=refs,
        input=input,
        output=output or OutputSpec(),
        options=dict(options or {}),
        metadata=dict(metadata or {}),
        decoder=decoder,
    )
    Manifest.from_dict(json.loads(manifest.to_json()))  # what we write must read back
    (root / MANIFEST_NAME).write_bytes(manifest.to_json())
    return Bundle(root, manifest)


def pack_bundle(bundle: Bundle, out: Path) -> Path:
    """Write the bundle as a `.tar.gz`: same inputs, same bytes (sorted, zeroed times and owners)."""
    import gzip
    import io
    import tarfile

    bundle.verify()
    names = sorted({MANIFEST_NAME, *(f.path for f in bundle.manifest.files.values())})
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirs: set[str] = set()
            for name in names:
                parts = Path(name).parts
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    if d not in dirs:
                        dirs.add(d)
                        tar.addfile(_tarinfo(d, 0, directory=True))
                data = (bundle.root / name).read_bytes()
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
    os.replace(tmp, out)
    return out


def _tarinfo(name: str, size: int, directory: bool = False) -> "tarfile.TarInfo":
    import stat
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = stat.S_IFDIR | 0o755
    else:
        info.mode = 0o644
    return info

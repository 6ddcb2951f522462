"""OPA's Wasm compilation of the policies, run in process by wasmtime.

The real `opa` compiles the Rego library (`opa build -t wasm`), so the embedded engine decides
with OPA's own semantics; wasmtime runs the module through OPA's Wasm ABI (the one-call
`opa_eval` entry point). The library needs no host built-ins (docs/policy-contract.md): a module
that asks for one is refused at load.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from connector.errors import ConnectorError

_PAGE = 65536


class WasmPolicyError(ConnectorError):
    """The policies cannot be compiled to Wasm, or the module cannot evaluate them."""


def compile_to_wasm(opa_bin: str, modules: dict[str, str], entrypoint: str) -> bytes:
    """Run `opa build -t wasm` on the modules and return the policy.wasm it produced."""
    with tempfile.TemporaryDirectory(prefix="tdsc-wasm-") as tmp:
        src = Path(tmp) / "src"
        for name, text in modules.items():
            path = src / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        out = Path(tmp) / "bundle.tar.gz"
        cmd = [opa_bin, "build", "-t", "wasm", "-e", entrypoint, "-o", str(out), str(src)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WasmPolicyError(f"cannot run {opa_bin} build: {exc}") from exc
        if done.returncode != 0:
            raise WasmPolicyError(
                f"policies do not compile: {(done.stderr or done.stdout).strip()[:2000]}"
            )
        with tarfile.open(out) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("/") == "policy.wasm":
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read()
    raise WasmPolicyError("opa build produced no policy.wasm")


class WasmPolicy:
    """One instance of a compiled policy module; `evaluate` is one call into Wasm."""

    def __init__(self, wasm: bytes, entrypoint: str) -> None:
        self._engine = wasmtime.Engine()
        self._store = wasmtime.Store(self._engine)
        try:
            module = wasmtime.Module(self._engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise WasmPolicyError(f"not a Wasm module: {exc}") from exc
        self._memory: wasmtime.Memory | None = None
        linker = wasmtime.Linker(self._engine)
        for imp in module.imports:
            self._provide(linker, imp)
        instance = linker.instantiate(self._store, module)
        exports = instance.exports(self._store)
        self._exports = exports
        needs = self._dump(self._call("builtins"))
        if needs:
            names = ", ".join(sorted(needs))
            raise WasmPolicyError(f"the policies use built-ins Wasm does not provide: {names}")
        points = self._dump(self._call("entrypoints"))
        if entrypoint not in points:
            raise WasmPolicyError(f"entrypoint {entrypoint} is not defined by the policies")
        self._entrypoint = int(points[entrypoint])
        self._data = self._parse(b"{}")
        self._base = int(self._call("opa_heap_ptr_get"))
        self._eval = _fast_call(self._store, exports["opa_eval"], 7)

    def evaluate(self, value: dict[str, Any]) -> Any:
        """The entrypoint's value for this input; None when it is undefined."""
        raw = json.dumps(value, separators=(",", ":")).encode()
        self._reserve(self._base + len(raw) + _PAGE)
        self._write(self._base, raw)
        try:
            at = self._eval(0, self._entrypoint, self._data, self._base, len(raw),
                            self._base + len(raw), 0)  # fmt: skip
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise WasmPolicyError(f"the policy module failed: {exc}") from exc
        results = json.loads(self._string(at))
        return results[0].get("result") if results else None

    # --- the host side of OPA's Wasm ABI --------------------------------------------------

    def _provide(self, linker: wasmtime.Linker, imp: wasmtime.ImportType) -> None:
        ty, name = imp.type, imp.name or ""
        if isinstance(ty, wasmtime.MemoryType):
            # (OPA's SDKs start with 5 pages: the module's declared minimum is too small for
            # its start-up allocations)
            pages = max(ty.limits.min, 5)
            self._memory = wasmtime.Memory(
                self._store, wasmtime.MemoryType(wasmtime.Limits(pages, ty.limits.max))
            )
            linker.define(self._store, imp.module, name, self._memory)
        elif isinstance(ty, wasmtime.FuncType):
            linker.define_func(imp.module, name, ty, self._host_function(name))
        else:
            raise WasmPolicyError(f"the policy module imports an unknown {name}")

    def _host_function(self, name: str) -> Callable[..., Any]:
        def abort(addr: int) -> None:
            raise WasmPolicyError(f"the policy module aborted: {self._string(addr)}")

        def println(addr: int) -> None:
            return None

        def builtin(*_: int) -> int:
            raise WasmPolicyError(f"the policy module called a host built-in ({name})")

        return {"opa_abort": abort, "opa_println": println}.get(name, builtin)

    def _call(self, name: str, *args: int) -> Any:
        func = self._exports[name]
        assert isinstance(func, wasmtime.Func)
        return func(self._store, *args)

    def _mem(self) -> wasmtime.Memory:
        assert self._memory is not None
        return self._memory

    def _parse(self, raw: bytes) -> int:
        addr = int(self._call("opa_malloc", len(raw)))
        self._write(addr, raw)
        value = int(self._call("opa_json_parse", addr, len(raw)))
        if value == 0:
            raise WasmPolicyError("the policy module could not parse its data")
        return value

    def _dump(self, value: int) -> Any:
        return json.loads(self._string(int(self._call("opa_json_dump", value))))

    def _reserve(self, end: int) -> None:
        mem = self._mem()
        size = mem.data_len(self._store)
        if end > size:
            mem.grow(self._store, (end - size + _PAGE - 1) // _PAGE)

    def _write(self, addr: int, raw: bytes) -> None:
        ctypes.memmove(self._address(addr), raw, len(raw))

    def _string(self, addr: int) -> str:
        return ctypes.string_at(self._address(addr)).decode()

    def _address(self, addr: int) -> int:
        return ctypes.addressof(self._mem().data_ptr(self._store).contents) + addr


def _fast_call(store: wasmtime.Store, func: Any, arity: int) -> Callable[..., int]:
    """Call an (i32...) -> i32 export without wasmtime-py's per-call type conversions.

    The public `Func.__call__` re-reads the function type and converts each argument on every
    call, which costs about 45 us for opa_eval's seven arguments, more than most decisions.
    This uses the same C API with argument buffers prepared once; if wasmtime's internal
    bindings move, it falls back to the public call.
    """
    try:
        from wasmtime import _ffi as ffi

        params = (ffi.wasmtime_val_t * arity)()
        for param in params:
            param.kind = ffi.WASMTIME_I32
        results = (ffi.wasmtime_val_t * 1)()
        context = store._context()
        ref = ctypes.byref(func._func)
        call_c = ffi.wasmtime_func_call
        trap_type = ctypes.POINTER(ffi.wasm_trap_t)
    except (ImportError, AttributeError):  # pragma: no cover - wasmtime changed its internals
        return lambda *args: int(func(store, *args))

    def call(*args: int) -> int:
        for i, arg in enumerate(args):
            params[i].of.i32 = arg
        trap = trap_type()
        error = call_c(context, ref, params, arity, results, 1, ctypes.byref(trap))
        if error or trap:
            # let the public call raise wasmtime's own error or trap
            return int(func(store, *args))
        return int(results[0].of.i32)

    return call

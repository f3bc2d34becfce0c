"""The error tree and the public namespace."""

from __future__ import annotations

import inspect
import re
import types

import pydevts
import pydevts.errors as errors
import pytest

ERROR_CLASSES = [
    obj
    for name, obj in vars(errors).items()
    if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
]


def test_error_classes_were_found() -> None:
    assert len(ERROR_CLASSES) >= 19


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_derives_from_pydevts_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, errors.PydevtsError)
    assert issubclass(cls, Exception)


def test_errors_all_lists_exactly_the_error_classes() -> None:
    assert sorted(errors.__all__) == sorted(c.__name__ for c in ERROR_CLASSES)
    assert len(errors.__all__) == len(set(errors.__all__))


def test_every_error_is_exported_from_the_package() -> None:
    for name in errors.__all__:
        assert name in pydevts.__all__, name
        assert getattr(pydevts, name) is getattr(errors, name)


def test_errors_docstring_mentions_every_error_class() -> None:
    doc = errors.__doc__ or ""
    for cls in ERROR_CLASSES:
        assert re.search(rf"\b{cls.__name__}\b", doc), cls.__name__


def _docstring_tree() -> dict[str, str | None]:
    """Parse the box-drawing tree in the errors docstring into {class: parent}."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(?P<prefix>[\s│├└─]*)(?P<name>[A-Z]\w*Error)\b", line)
        if not match:
            continue
        depth = len(match.group("prefix"))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group("name")] = stack[-1][1] if stack else None
        stack.append((depth, match.group("name")))
    return parents


def test_errors_docstring_tree_matches_the_class_hierarchy() -> None:
    tree = _docstring_tree()
    assert set(tree) == {c.__name__ for c in ERROR_CLASSES}
    assert tree["PydevtsError"] is None
    for name, parent in tree.items():
        if parent is None:
            continue
        cls = getattr(errors, name)
        assert getattr(errors, parent) in cls.__bases__, f"{name} should derive directly from {parent}"


def test_error_constructors_keep_their_details() -> None:
    e1 = errors.FrameTooLargeError(10, 5)
    assert (e1.size, e1.limit) == (10, 5)
    e2 = errors.HandshakeRefusedError("cluster name differs")
    assert e2.reason == "cluster name differs"
    assert "cluster name differs" in str(e2)
    assert isinstance(e2, errors.RemoteProtocolError)
    e3 = errors.UnknownNodeError("n1", "no route")
    assert e3.node_id == "n1" and "'n1'" in str(e3) and "no route" in str(e3)
    assert str(errors.UnknownNodeError("n2")) == "unknown node 'n2'"
    e4 = errors.RemoteHandlerError("it broke", remote_type="ValueError")
    assert e4.remote_type == "ValueError" and str(e4) == "it broke"
    e5 = errors.PluginNotFoundError("transport", "udp", ["tcp"])
    assert (e5.kind, e5.name, e5.available) == ("transport", "udp", ["tcp"])


def test_request_timeout_is_also_a_builtin_timeout_error() -> None:
    assert issubclass(errors.RequestTimeoutError, TimeoutError)
    assert issubclass(errors.RequestTimeoutError, errors.DeliveryError)


# ------------------------------------------------------------------ pydevts.__all__


def _public_names() -> set[str]:
    return {
        name
        for name, value in vars(pydevts).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # submodules appear once imported
        and type(value).__module__ != "__future__"  # `from __future__ import annotations`
    }


def test_package_all_has_no_duplicates() -> None:
    assert len(pydevts.__all__) == len(set(pydevts.__all__))


def test_package_all_names_all_exist() -> None:
    missing = [name for name in pydevts.__all__ if not hasattr(pydevts, name)]
    assert missing == []


def test_package_all_is_complete() -> None:
    assert set(pydevts.__all__) == _public_names()


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pydevts import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(pydevts.__all__)


def test_package_version() -> None:
    assert pydevts.__version__ == "0.3.0"

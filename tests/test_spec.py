"""PROTOCOL.md and the test vectors: both current with the code, and every vector agreeing with this implementation."""

import importlib.util
import json
from pathlib import Path

import pytest
import trio
import trio.testing

from wattshare import protocol as p
from wattshare.ledger import EntryRefused, check_entry
from wattshare.node._framing import FrameError, FrameStream
from wattshare.protocol._envelope import signing_input
from wattshare.protocol._record import MESSAGE_TYPES
from wattshare.protocol._wire import FRAMES

ROOT = Path(__file__).parent.parent


def _tool(name):
    """One of the generators in docs/ (not a package: run as scripts)."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


spec_tool, vector_tool = _tool("protocol_spec"), _tool("vectors")


def vectors(name):
    return json.loads((ROOT / "vectors" / name).read_text())


def test_protocol_md_and_its_json_schemas_are_what_the_code_generates():
    files, stale = spec_tool.outputs()
    assert stale == [], f"stale: {stale}: run python docs/protocol_spec.py"
    for name in spec_tool.BLOCKS:
        assert f"<!-- generated:{name} -->" in files[spec_tool.SPEC], name


def test_the_json_schemas_describe_every_vector():
    """Each valid frame's keys are the schema's keys of its record, in order, all present."""
    schema = json.loads((ROOT / "vectors" / "schema.json").read_text())
    assert set(schema["frames"]) == set(FRAMES) and set(schema["messages"]) == set(MESSAGE_TYPES)
    for vector in vectors("frames.json"):
        record = schema["records"][schema["frames"][vector["kind"]]]
        assert list(vector["value"][vector["kind"]]) == [key["key"] for key in record["keys"]], vector["name"]


def test_protocol_md_names_every_reason_code_frame_kind_and_message_type():
    text = (ROOT / "PROTOCOL.md").read_text()
    for value in [*p.Reason, *FRAMES, *MESSAGE_TYPES]:
        assert f"`{value}`" in text, value


def test_the_vector_files_are_what_the_code_generates():
    for name, content in vector_tool.build().items():
        assert (ROOT / "vectors" / name).read_text() == vector_tool.render(content), f"run python docs/vectors.py ({name})"


def _check_envelope(vector):
    """A valid envelope vector: decodes, verifies, and its seed signs the very same bytes."""
    data = bytes.fromhex(vector["hex"])
    signed = p.Signed.decode(data, MESSAGE_TYPES[vector["type"]])
    identity = p.Identity(bytes.fromhex(vector["seed"]))
    assert signed.signer == identity.public_key
    assert signing_input(signed.type, signed.body).hex() == vector["signing_input"]
    assert identity.sign(signing_input(signed.type, signed.body)) == signed.signature  # Ed25519 is deterministic
    assert signed.digest.hex() == vector["digest"]
    assert vector_tool.to_json(signed.message.to_wire()) == vector["body"], vector["name"]
    assert p.sign(identity, signed.message).encode() == data, vector["name"]


def test_every_valid_envelope_decodes_verifies_and_signs_to_the_same_bytes():
    found = vectors("envelopes.json")
    assert {v["type"] for v in found} == set(MESSAGE_TYPES)
    for vector in found:
        _check_envelope(vector)


def test_every_frame_kind_decodes_and_encodes_to_the_same_bytes():
    found = vectors("frames.json")
    assert {v["kind"] for v in found} == set(FRAMES)
    for vector in found:
        data = bytes.fromhex(vector["hex"])
        frame = p.decode_frame(data, FRAMES[vector["kind"]])
        assert p.encode_frame(frame) == data, vector["name"]
        assert vector_tool.to_json({vector["kind"]: frame.to_wire()}) == vector["value"], vector["name"]


class _Bytes:
    """A byte stream holding `data`, then its end."""

    def __init__(self, data):
        self.data = data

    async def read(self, n=-1):
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk

    async def write(self, data):
        raise AssertionError("nothing is written")


def _refusal(vector):
    """The reason this implementation refuses an invalid vector with."""
    data, expect = bytes.fromhex(vector["hex"]), vector["expect"]
    try:
        if vector["decoder"] == "envelope":
            p.Signed.decode(data, MESSAGE_TYPES[expect])
        elif vector["decoder"] == "frame":
            p.decode_frame(data, FRAMES[expect])
        else:
            async def read():
                await FrameStream(_Bytes(data), timeout=5).receive(FRAMES[expect])

            trio.run(read, clock=trio.testing.MockClock(autojump_threshold=0))
    except (p.RemoteProtocolError, FrameError) as exc:
        return str(exc.reason)
    raise AssertionError(f"accepted: {vector['name']}")


@pytest.mark.parametrize("vector", vectors("invalid.json"), ids=lambda v: v["name"])
def test_every_invalid_vector_is_refused_with_its_reason_code(vector):
    assert _refusal(vector) == vector["reason"]


def test_the_invalid_vectors_cover_each_way_a_decoder_refuses():
    reasons = {v["reason"] for v in vectors("invalid.json")}
    assert reasons >= {"malformed", "non_canonical", "oversize", "unknown_type", "unexpected_type", "bad_signature",
                       "wrong_signer"}
    assert {v["decoder"] for v in vectors("invalid.json")} == {"envelope", "frame", "stream"}


def test_ledger_entry_vectors_pass_or_break_the_rule_they_name():
    for vector in vectors("entries.json"):
        data = bytes.fromhex(vector["hex"])
        if "rule" in vector:
            with pytest.raises(EntryRefused) as refused:
                check_entry(data)
            assert refused.value.rule == vector["rule"], vector["name"]
        else:
            assert check_entry(data).kind == vector["kind"], vector["name"]
            _check_envelope(vector)

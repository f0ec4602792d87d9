"""The registry of attack ids (audit/attacks/__init__.py)."""

from hgan.audit.attacks import KNOWN_IDS, is_known


def test_attack_ids_are_unique_and_documented():
    import hgan.audit.attacks as attacks

    assert len(set(KNOWN_IDS)) == len(KNOWN_IDS) == 9
    for attack_id in KNOWN_IDS:
        assert f"``{attack_id}``" in attacks.__doc__


def test_unknown_ids_are_not_known():
    assert is_known("mia.dcr") and is_known("risk.inference.age")
    assert not is_known("mia.dcr2") and not is_known("risk.inference.") and not is_known("")

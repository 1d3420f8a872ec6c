from shared.schemas import stale


def test_checked_in_schemas_match_the_event_models():
    assert stale() == [], "run `make schemas` and commit schemas/"

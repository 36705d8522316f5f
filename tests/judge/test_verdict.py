import pytest

from routewatch.judge.verdict import VerdictError, parse_verdict

SCALE = (1, 5)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"reasoning": "ok", "score": 4}', 4),
        ('```json\n{"reasoning": "ok", "score": 2}\n```', 2),
        ('Thinking... {"score": 1} no wait, final: {"reasoning": "r", "score": 3}', 3),
        ('{"score": 5.0, "reasoning": "r"}', 5),
        ("The answer is right.\nScore: 4", 4),
        ("score = 2 at first, but on reflection score: 5", 5),
    ],
)
def test_verdicts_are_read_from_json_or_text(reply: str, score: int) -> None:
    assert parse_verdict(reply, SCALE).score == score


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ('{"score": 6}', "outside the scale"),
        ('{"score": 0}', "outside the scale"),
        ('{"score": 3.5}', "not a whole number"),
        ('{"score": true}', "not a whole number"),
        ('{"score": "high"}', "not a number"),
        ("I think it is fine.", "no verdict"),
        ("", "no verdict"),
    ],
)
def test_unusable_verdicts_raise(reply: str, message: str) -> None:
    with pytest.raises(VerdictError, match=message):
        parse_verdict(reply, SCALE)


def test_normalised_score_maps_the_scale_to_0_1() -> None:
    verdict = parse_verdict('{"score": 4, "reasoning": ""}', SCALE)

    assert verdict.normalised(SCALE) == 0.75

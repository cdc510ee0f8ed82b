"""The spread of a curation head's answers: a head that says one thing for everything is no head.

The bundled head of issue 17 rejected every real micrograph it was shown as ``carbon_only``; on
its own simulated test set it looked excellent. This check looks only at what a head *answers*
on a validation set (no labels needed): the share of the most common decision (accept/reject)
and of the most common class. A recipe that trains a head to ship calls :func:`check_spread`
on its validation answers and refuses to write a head that fails it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from draco_em.docs_index import doc_ref
from draco_em.errors import DracoInputError

#: Largest share of one answer a shipped head may give on a mixed validation set.
MAX_SHARE = 0.9


def answer_shares(decisions: Sequence[str], classes: Sequence[str]) -> dict[str, tuple[str, float]]:
    """Most common decision and most common class with their shares of the answers.

    Args:
        decisions: ``accept``/``reject`` per micrograph.
        classes: the class answered per micrograph (the reason, or the accept class).

    Returns:
        ``{"decision": (answer, share), "class": (answer, share)}``.
    """
    if not decisions or len(decisions) != len(classes):
        raise ValueError("need one decision and one class per micrograph, at least one")
    out = {}
    for what, answers in (("decision", decisions), ("class", classes)):
        answer, count = Counter(answers).most_common(1)[0]
        out[what] = (str(answer), count / len(answers))
    return out


def check_spread(
    decisions: Sequence[str], classes: Sequence[str], max_share: float = MAX_SHARE, name: str = ""
) -> dict[str, tuple[str, float]]:
    """Raise when one decision or one class is more than ``max_share`` of the answers.

    Use it on a validation set that holds both good and bad micrographs (a set of only good
    ones is rightly answered ``accept`` throughout).

    Returns:
        :func:`answer_shares` when the spread is acceptable.

    Raises:
        DracoInputError: naming the dominant answer and its share.
    """
    shares = answer_shares(decisions, classes)
    for what in ("class", "decision"):  # the class names the culprit best
        answer, share = shares[what]
        if share > max_share:
            where = f" on {name}" if name else ""
            raise DracoInputError(
                f"the head answers {what} {answer!r} for {share:.0%} of the validation "
                f"micrographs{where} (limit {max_share:.0%}): it does not sort them; not written"
            )
    return shares


def reject_reasons(decisions: Sequence[str], classes: Sequence[str]) -> list[tuple[str, int]]:
    """The rejected micrographs' reasons with their counts, most common first."""
    return Counter(
        c for d, c in zip(decisions, classes, strict=True) if d == "reject"
    ).most_common()


def batch_warning(
    decisions: Sequence[str], classes: Sequence[str], max_share: float = MAX_SHARE, min_n: int = 10
) -> str | None:
    """A one-line warning when one reject reason covers more than ``max_share`` of a batch of at
    least ``min_n`` micrographs, else None.

    A whole data set rejected for one reason can be right (a grid of crystalline ice), but it is
    also what a head looks like on images unlike its training data (the bundled head on
    pre-denoised 8-bit renderings, docs/benchmarks.md issue 19): the user should look before
    discarding the session.
    """
    if len(decisions) < min_n:
        return None
    reasons = reject_reasons(decisions, classes)
    if not reasons:
        return None
    reason, count = reasons[0]
    if count / len(decisions) <= max_share:
        return None
    return (
        f"{count} of {len(decisions)} micrographs rejected as {reason!r}: look at "
        "contact_sheet.png before discarding them; a head judging images unlike its training "
        f"data answers one class for most of them ({doc_ref('curation')})"
    )

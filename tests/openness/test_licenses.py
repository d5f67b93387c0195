"""Licence analysis: SPDX normalisation, openness, identification and restriction clauses.

Fixture texts are in fixtures/licenses/ (see its README: the open licences verbatim, the model
licences as our own paraphrases). `HOLDOUTS` are paraphrases written after the detector was
finished and run once before any tuning; see the note above them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from allmende.openness.evidence import CLAUSE_KINDS, Clause, Source
from allmende.openness.licenses import (
    RESTRICTIVE_KINDS,
    analyse,
    analysis_to_json,
    detect_clauses,
    identify_text,
    is_open_license,
    known_clauses,
    known_license,
    license_name,
    normalize_spdx,
)
from allmende.openness.licenses.known import catalog
from allmende.openness.licenses.text import sentences, words
from allmende.openness.licenses.thresholds import user_threshold

FIXTURES = Path(__file__).parent / "fixtures" / "licenses"
SOURCE = Source("license-text", "LICENSE")


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def kinds(clauses: list[Clause]) -> set[str]:
    return {c.kind for c in clauses}


def check_offsets(text: str, clauses: list[Clause]) -> None:
    for c in clauses:
        assert text[c.evidence.start : c.evidence.end] == c.evidence.quote
        assert c.evidence.quote.strip() == c.evidence.quote and c.evidence.quote


# --- open licences -------------------------------------------------------------------------

OPEN_TEXTS = [
    ("mit.txt", "MIT", "MIT License"),
    ("apache-2.0.txt", "Apache-2.0", "Apache License 2.0"),
    ("bsd-3-clause.txt", "BSD-3-Clause", 'BSD 3-Clause "New" or "Revised" License'),
    ("cc0-1.0.txt", "CC0-1.0", "Creative Commons Zero v1.0 Universal"),
    ("cc-by-4.0.txt", "CC-BY-4.0", "Creative Commons Attribution 4.0 International"),
    ("gpl-2.0.txt", "GPL-2.0-only", "GNU General Public License v2.0 only"),
    ("gpl-3.0.txt", "GPL-3.0-only", "GNU General Public License v3.0 only"),
    ("lgpl-2.1.txt", "LGPL-2.1-only", "GNU Lesser General Public License v2.1 only"),
    ("lgpl-3.0.txt", "LGPL-3.0-only", "GNU Lesser General Public License v3.0 only"),
    ("mpl-2.0.txt", "MPL-2.0", "Mozilla Public License 2.0"),
]


@pytest.mark.parametrize(("name", "spdx", "title"), OPEN_TEXTS)
def test_open_licence_texts_are_identified_and_carry_no_restrictions(
    name: str, spdx: str, title: str
) -> None:
    text = read(name)
    assert identify_text(text)[:2] == (spdx, title)
    assert identify_text(text)[2] >= 0.9
    clauses = detect_clauses(text, SOURCE)
    check_offsets(text, clauses)
    assert not kinds(clauses) & RESTRICTIVE_KINDS, [c.evidence.quote for c in clauses]
    assert is_open_license(spdx)


@pytest.mark.parametrize("name", ["mit.txt", "apache-2.0.txt", "bsd-3-clause.txt", "cc-by-4.0.txt"])
def test_permissive_texts_have_no_clauses_at_all(name: str) -> None:
    assert detect_clauses(read(name), SOURCE) == []


@pytest.mark.parametrize("name", ["gpl-2.0.txt", "gpl-3.0.txt", "mpl-2.0.txt"])
def test_copyleft_texts_yield_share_alike(name: str) -> None:
    assert kinds(detect_clauses(read(name), SOURCE)) == {"share-alike"}


def test_permissive_text_without_title_is_found_by_its_phrases() -> None:
    body = read("mit.txt").split("\n", 2)[2]  # drop the "MIT License" title
    assert identify_text(body)[:2] == ("MIT", "MIT License")
    bsd2 = "\n".join(
        line for line in read("bsd-3-clause.txt").splitlines() if "Neither" not in line
    )
    assert identify_text(bsd2)[0] in ("BSD-3-Clause", "BSD-2-Clause")


def test_open_text_with_an_added_restriction_is_not_that_licence() -> None:
    text = read("unfamiliar-modified-mit.txt")
    assert identify_text(text) == (None, "Modified MIT License", 0.5)
    assert kinds(detect_clauses(text, SOURCE)) == {"user-threshold", "attribution"}
    apache = read("apache-2.0.txt")
    cut = apache.index("   END OF TERMS AND CONDITIONS")
    embedded = (
        apache[:cut] + "\n   10. You may not use the Work for commercial purposes.\n" + apache[cut:]
    )
    found = detect_clauses(embedded, SOURCE)
    assert kinds(found) == {"non-commercial"}
    check_offsets(embedded, found)
    assert identify_text(embedded)[0] is None


# --- model licences (our paraphrases) ------------------------------------------------------

MOCKS = [
    ("mock-llama31.txt", {"attribution", "use-policy", "user-threshold"}, [700_000_000]),
    ("mock-gemma.txt", {"use-policy", "pass-through", "revocable"}, []),
    ("mock-openrail.txt", {"use-policy", "pass-through", "revocable"}, []),
    ("mock-nonprod.txt", {"research-only", "non-commercial"}, []),
    ("mock-qwen.txt", {"user-threshold", "output-restriction", "attribution"}, [100_000_000]),
    (
        "unfamiliar-acme.txt",
        {"user-threshold", "output-restriction", "geographic", "revocable", "pass-through"},
        [100_000_000, 700_000_000],
    ),
]


@pytest.mark.parametrize(("name", "expected", "thresholds"), MOCKS)
def test_model_licences_yield_their_clauses(
    name: str, expected: set[str], thresholds: list[int]
) -> None:
    text = read(name)
    clauses = detect_clauses(text, SOURCE)
    check_offsets(text, clauses)
    assert kinds(clauses) == expected
    assert [c.threshold for c in clauses if c.kind == "user-threshold"] == thresholds
    assert all(c.threshold is None for c in clauses if c.kind != "user-threshold")
    assert all(c.source == SOURCE for c in clauses)


def test_llama_like_attribution_finds_both_the_display_and_the_name_prefix() -> None:
    text = read("mock-llama31.txt")
    quotes = [c.evidence.quote for c in detect_clauses(text, SOURCE) if c.kind == "attribution"]
    assert len(quotes) == 2
    assert "Built with Llama" in quotes[0] and "beginning of that model's name" in quotes[1]


@pytest.mark.parametrize(("name", "expected", "thresholds"), MOCKS)
def test_reordered_sentences_yield_the_same_clauses(
    name: str, expected: set[str], thresholds: list[int]
) -> None:
    parts = [s.text for s in sentences(read(name))]
    random.Random(7).shuffle(parts)
    text = "\n\n".join(parts)
    clauses = detect_clauses(text, SOURCE)
    check_offsets(text, clauses)
    assert kinds(clauses) == expected
    assert sorted(c.threshold for c in clauses if c.threshold) == sorted(thresholds)


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("mock-llama31.txt", "Llama 3.1 Community License Agreement"),
        ("mock-gemma.txt", "Gemma Terms of Use"),
        ("mock-openrail.txt", "BigScience OpenRAIL-M License"),
        ("mock-nonprod.txt", "Mistral AI Non-Production License"),
        ("mock-qwen.txt", "Tongyi Qianwen License Agreement"),
    ],
)
def test_model_licences_are_identified_by_title(name: str, title: str) -> None:
    assert identify_text(read(name)) == (None, title, 0.95)


@pytest.mark.parametrize(
    ("head", "spdx", "name"),
    [
        ("LLAMA 2 COMMUNITY LICENSE AGREEMENT", None, "Llama 2 Community License Agreement"),
        (
            "META LLAMA 3 COMMUNITY LICENSE AGREEMENT",
            None,
            "Meta Llama 3 Community License Agreement",
        ),
        ("LLAMA 3.2 COMMUNITY LICENSE AGREEMENT", None, "Llama 3.2 Community License Agreement"),
        ("LLAMA 3.3 COMMUNITY LICENSE AGREEMENT", None, "Llama 3.3 Community License Agreement"),
        ("LLAMA 4 COMMUNITY LICENSE AGREEMENT", None, "Llama 4 Community License Agreement"),
        ("DEEPSEEK LICENSE AGREEMENT\nVersion 1.0", None, "DeepSeek License Agreement"),
        ("Falcon 180B TII License Version 1.0", None, "Falcon-180B TII License"),
        ("Qwen LICENSE AGREEMENT", None, "Qwen License Agreement"),
        ("CreativeML Open RAIL-M License", None, "CreativeML OpenRAIL-M License"),
        ("BigScience RAIL License v1.0", None, "BigScience BLOOM RAIL License v1.0"),
        ("Databricks Open Model License", None, "Databricks Open Model License"),
        ("NVIDIA Open Model License Agreement", None, "NVIDIA Open Model License"),
        ("Apple Sample Code License", None, "Apple Sample Code License"),
        (
            "Attribution-NonCommercial 4.0 International",
            "CC-BY-NC-4.0",
            "Creative Commons Attribution-NonCommercial 4.0 International",
        ),
        (
            "Attribution-ShareAlike 4.0 International",
            "CC-BY-SA-4.0",
            "Creative Commons Attribution Share Alike 4.0 International",
        ),
    ],
)
def test_identify_text_by_titles(head: str, spdx: str | None, name: str) -> None:
    found = identify_text(head + "\n\nThe terms below apply to the materials.")
    assert found[:2] == (spdx, name)


def test_unknown_text_is_not_identified() -> None:
    assert identify_text("Be excellent to each other.") == (None, None, 0.0)


# --- generalisation: hold-out paraphrases --------------------------------------------------
# Written after the detector was finished and run once before any change: 36 of 39 passed.
# The three first-try failures: "must not deploy the Model to surveil ..." (a regex joining bug,
# fixed), "more than 10 million users worldwide" read as a threshold (a statement of fact; user
# thresholds now need a condition word), and the pass-through sentence that mentions "use
# restrictions" also yielding use-policy (judged correct: the expectation was changed).
# The mock fixtures above were also written after the detector: on first run it missed the
# name-prefix sentence ("put "Llama" at the beginning of that model's name"), "Nothing that the
# weights generate may be used to train ... a competing model" and "None of the rights ... are
# granted to organisations established in the European Union", and read a title line as a
# research-only clause; all four were fixed by broadening the rules, not by matching the text.
HOLDOUTS: list[tuple[str, set[str], int | None]] = [
    # user-threshold
    (
        "If your service exceeds one hundred million monthly active users, you must obtain a "
        "separate licence from us.",
        {"user-threshold"},
        100_000_000,
    ),
    (
        "Licensees with more than 700,000,000 MAU in the prior calendar month need our written "
        "permission.",
        {"user-threshold"},
        700_000_000,
    ),
    (
        "This grant does not extend to any organisation whose products together reach 50 million "
        "daily active users or more.",
        {"user-threshold"},
        50_000_000,
    ),
    (
        "Companies whose annual revenue is above USD 10 million must purchase an enterprise "
        "licence.",
        {"user-threshold"},
        10_000_000,
    ),
    (
        "Where the number of registered users of your application is greater than 2.5 billion, "
        "these rights lapse.",
        {"user-threshold"},
        2_500_000_000,
    ),
    # attribution
    (
        'Any product that incorporates the Model shall clearly show the phrase "Powered by '
        'Falconet" in its user interface.',
        {"attribution"},
        None,
    ),
    (
        'Fine-tuned derivatives that you publish must have names that start with "Orca".',
        {"attribution"},
        None,
    ),
    (
        "When you ship an application built on these weights, you are required to prominently "
        "credit Acme AI on your website.",
        {"attribution"},
        None,
    ),
    # use-policy
    (
        "Your use of the Model is subject to the Usage Policy posted at "
        "https://example.com/policy.",
        {"use-policy"},
        None,
    ),
    (
        "You must not deploy the Model to surveil individuals or to generate disinformation.",
        {"use-policy"},
        None,
    ),
    (
        "The uses prohibited in Schedule 2 (Prohibited Uses) apply to every licensee.",
        {"use-policy"},
        None,
    ),
    # output-restriction
    (
        "Content generated by the Model may not be used to train a competing foundation model.",
        {"output-restriction"},
        None,
    ),
    (
        "You shall not use any outputs of the Software to develop or improve a large language "
        "model other than the Software itself.",
        {"output-restriction"},
        None,
    ),
    (
        "Responses produced by the system must never serve as training data for another AI model.",
        {"output-restriction"},
        None,
    ),
    # non-commercial
    (
        "The weights are made available for non-commercial purposes; any commercial exploitation "
        "is prohibited.",
        {"non-commercial"},
        None,
    ),
    (
        "You may not use the Model commercially without first entering into a commercial "
        "agreement with us.",
        {"non-commercial"},
        None,
    ),
    ("Commercial use of the Model is not permitted under this licence.", {"non-commercial"}, None),
    # research-only
    ("The Model may be used solely for academic research.", {"research-only"}, None),
    (
        "This release is intended for evaluation purposes only and must not be deployed in "
        "production.",
        {"research-only"},
        None,
    ),
    (
        "You are licensed to use the weights exclusively for testing and benchmarking in "
        "non-production environments.",
        {"research-only"},
        None,
    ),
    # geographic
    ("The licence is not granted to residents of the European Union.", {"geographic"}, None),
    ("Users located in mainland China may not download or use the Model.", {"geographic"}, None),
    (
        "Rights under Section 2 do not apply to entities established in the EU or the EEA.",
        {"geographic"},
        None,
    ),
    # revocable
    ("We may revoke this licence at any time and for any reason.", {"revocable"}, None),
    (
        "The Licensor can terminate your access to the Model at its sole discretion.",
        {"revocable"},
        None,
    ),
    (
        "The provider may disable remotely any deployment that it believes violates these terms.",
        {"revocable"},
        None,
    ),
    # pass-through
    (
        "Anyone who receives the Model from you must be bound by the same use restrictions.",
        {"pass-through", "use-policy"},
        None,
    ),
    (
        "You shall require your downstream users to comply with the prohibited uses listed in "
        "Attachment A.",
        {"pass-through", "use-policy"},
        None,
    ),
    (
        "The restrictions in this section must flow down to all sublicensees.",
        {"pass-through"},
        None,
    ),
    # share-alike
    (
        "Adapted works must be released under the same licence as the original.",
        {"share-alike"},
        None,
    ),
    (
        "If you remix or transform the material, you must distribute your contributions under "
        "the same license as the original (ShareAlike).",
        {"share-alike"},
        None,
    ),
    (
        "Modified versions of the Model shall be distributed under the terms of this Agreement.",
        {"share-alike"},
        None,
    ),
    # negatives: sentences of open licences that use the same words
    (
        "You may use the Software for any purpose, including commercial and non-commercial "
        "purposes.",
        set(),
        None,
    ),
    (
        "Redistributions must retain the above copyright notice and display it in the "
        "documentation.",
        set(),
        None,
    ),
    (
        "Outputs you generate belong to you and may be used for any purpose, including training "
        "other models.",
        set(),
        None,
    ),
    ("This license terminates automatically if you fail to comply with its terms.", set(), None),
    ("The software is used by more than 10 million users worldwide.", set(), None),
    (
        "This Agreement is governed by the laws of Germany and the courts of Munich have "
        "jurisdiction.",
        set(),
        None,
    ),
    (
        "Contributions are licensed under the terms of this License unless stated otherwise.",
        set(),
        None,
    ),
]


@pytest.mark.parametrize(("sentence", "expected", "threshold"), HOLDOUTS)
def test_holdout_paraphrases(sentence: str, expected: set[str], threshold: int | None) -> None:
    clauses = detect_clauses(sentence, SOURCE)
    assert kinds(clauses) == expected
    assert next((c.threshold for c in clauses if c.kind == "user-threshold"), None) == threshold
    check_offsets(sentence, clauses)


def test_a_clause_embedded_in_a_long_paragraph_keeps_exact_offsets() -> None:
    filler = "The licensee may copy the files. " * 20
    text = filler + "Users in Russia are excluded from this licence. " + filler
    (clause,) = detect_clauses(text, SOURCE)
    assert clause.kind == "geographic"
    assert clause.evidence.start == len(filler)
    assert clause.evidence.quote == "Users in Russia are excluded from this licence."


@pytest.mark.parametrize(
    ("sentence", "value"),
    [
        ("if you have more than 700 million monthly active users", 700_000_000),
        ("licensees that exceed 100M MAU", 100_000_000),
        ("if you have over 1,500,000 users", 1_500_000),
        ("when above seven hundred million monthly active users", 700_000_000),
        ("the software is used by more than 10 million users", None),
        ("one hundred and fifty thousand subscribers or more must pay", 150_000),
        ("if revenue exceeds $20M per month", 20_000_000),
        ("Section 2 of version 3.1 applies to more than 3 users", None),
    ],
)
def test_thresholds(sentence: str, value: int | None) -> None:
    assert user_threshold(words(sentence).split()) == value


def test_sentences_have_exact_offsets_on_all_fixtures() -> None:
    for path in FIXTURES.glob("*.txt"):
        text = path.read_text(encoding="utf-8")
        for s in sentences(text):
            assert text[s.start : s.end] == s.text


# --- SPDX ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("MIT", "MIT"),
        ("mit", "MIT"),
        ("mit license", "MIT"),
        ("The MIT License", "MIT"),
        ("apache 2.0", "Apache-2.0"),
        ("Apache License 2.0", "Apache-2.0"),
        ("Apache License, Version 2.0", "Apache-2.0"),
        ("apache-2.0", "Apache-2.0"),
        ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
        ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
        ("GPLv3", "GPL-3.0-only"),
        ("gpl-2.0+", "GPL-2.0-or-later"),
        ("BSD 3-Clause", "BSD-3-Clause"),
        ("odc-by", "ODC-By-1.0"),
        ("OpenMDW-1.0", "OpenMDW-1.0"),
        ("MIT OR Apache-2.0", "MIT OR Apache-2.0"),
        ("apache-2.0 AND (mit)", "Apache-2.0 AND MIT"),
        ("mit or apache 2.0", "MIT OR Apache-2.0"),
        ("(MIT OR Apache-2.0) AND BSD-3-Clause", "(MIT OR Apache-2.0) AND BSD-3-Clause"),
        ("Apache-2.0 WITH LLVM-exception", "Apache-2.0 WITH LLVM-exception"),
        ("llama3.1", None),
        ("llama3", None),
        ("llama3.2", None),
        ("gemma", None),
        ("openrail", None),
        ("bigscience-bloom-rail-1.0", None),
        ("bigscience-openrail-m", None),
        ("apple-ascl", None),
        ("other", None),
        ("", None),
        ("MIT AND", None),
        ("MIT OR gemma", None),
    ],
)
def test_normalize_spdx(value: str, expected: str | None) -> None:
    assert normalize_spdx(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("MIT", True),
        ("Apache-2.0", True),
        ("apache 2.0", True),
        ("GPL-3.0-or-later", True),
        ("CC-BY-4.0", True),
        ("CC-BY-SA-4.0", True),
        ("CC0-1.0", True),
        ("CDLA-Permissive-2.0", True),
        ("ODC-PDDL-1.0", True),
        ("ODbL-1.0", True),
        ("OGL-UK-3.0", True),
        ("OpenMDW-1.0", True),
        ("CC-BY-NC-4.0", False),
        ("CC-BY-ND-4.0", False),
        ("llama3.1", False),
        ("gemma", False),
        ("other", False),
        (None, False),
        ("MIT OR CC-BY-NC-4.0", True),
        ("MIT OR llama3", True),
        ("MIT AND CC-BY-NC-4.0", False),
        ("MIT AND (Apache-2.0 OR CC-BY-NC-4.0)", True),
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", True),
    ],
)
def test_is_open_license(value: str | None, expected: bool) -> None:
    assert is_open_license(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("llama2", "Llama 2 Community License Agreement"),
        ("llama3", "Meta Llama 3 Community License Agreement"),
        ("llama3.1", "Llama 3.1 Community License Agreement"),
        ("llama3.2", "Llama 3.2 Community License Agreement"),
        ("llama3.3", "Llama 3.3 Community License Agreement"),
        ("llama4", "Llama 4 Community License Agreement"),
        ("gemma", "Gemma Terms of Use"),
        ("qwen", "Qwen License Agreement"),
        ("tongyi-qianwen", "Tongyi Qianwen License Agreement"),
        ("deepseek", "DeepSeek License Agreement"),
        ("falcon", "Falcon-180B TII License"),
        ("tii-falcon-180b", "Falcon-180B TII License"),
        ("mnpl", "Mistral AI Non-Production License"),
        ("bigscience-bloom-rail-1.0", "BigScience BLOOM RAIL License v1.0"),
        ("bigscience-openrail-m", "BigScience OpenRAIL-M License"),
        ("creativeml-openrail-m", "CreativeML OpenRAIL-M License"),
        ("openrail", "Open RAIL License (family)"),
        ("openrail++", "CreativeML OpenRAIL++-M License"),
        ("apple-ascl", "Apple Sample Code License"),
        ("cc-by-nc-4.0", "Creative Commons Attribution-NonCommercial 4.0 International"),
        ("LicenseRef-scancode-llama-3.1-license-2024", "Llama 3.1 Community License Agreement"),
        ("mit", "MIT License"),
        ("Apache License 2.0", "Apache License 2.0"),
        ("MIT OR Apache-2.0", "MIT OR Apache-2.0"),
        ("other", None),
        ("", None),
    ],
)
def test_license_name(value: str, expected: str | None) -> None:
    assert license_name(value) == expected


def test_license_name_of_a_text() -> None:
    assert license_name(read("mit.txt")) == "MIT License"


# --- known licences ------------------------------------------------------------------------


def test_known_licence_facts() -> None:
    llama = known_license("llama3.1")
    assert llama is not None and llama.url and llama.url.startswith("https://")
    by_kind = {c.kind: c for c in llama.clauses}
    assert by_kind["user-threshold"].threshold == 700_000_000
    assert {"attribution", "use-policy"} <= set(by_kind)
    assert "geographic" in {c.kind for c in known_license("llama3.2").clauses}  # type: ignore[union-attr]
    assert "output-restriction" in {c.kind for c in known_license("llama2").clauses}  # type: ignore[union-attr]
    gemma = known_license("Gemma Terms of Use")
    assert gemma is not None
    assert {c.kind for c in gemma.clauses} == {"use-policy", "revocable", "pass-through"}
    assert known_license("mit") is None


def test_every_known_licence_is_well_formed() -> None:
    for lic in catalog().models:
        assert lic.id and lic.name
        for c in lic.clauses:
            assert c.kind in CLAUSE_KINDS and c.checked in ("primary", "secondary", "unverified")
            assert (c.threshold is not None) == (c.kind == "user-threshold")
        if lic.spdx is not None:
            assert normalize_spdx(lic.spdx) == lic.spdx


def test_known_clauses_cite_the_licence_url_with_an_empty_span() -> None:
    lic = known_license("llama3.1")
    assert lic is not None
    clauses = known_clauses(lic)
    assert {c.kind for c in clauses} == {c.kind for c in lic.clauses}
    for c in clauses:
        assert c.source.kind == "catalog" and c.source.ref == lic.url
        assert c.source.detail == "known-licenses:llama3.1"
        assert (c.evidence.start, c.evidence.end, c.evidence.quote) == (0, 0, "")


# --- analysis ------------------------------------------------------------------------------


def test_analyse_and_json() -> None:
    text = read("mock-qwen.txt")
    result = analyse(text, Source("license-text", "models/qwen/LICENSE"))
    assert (result.spdx, result.name) == (None, "Tongyi Qianwen License Agreement")
    out = analysis_to_json(result)
    assert set(out) == {"spdx", "name", "clauses"}
    json.dumps(out)
    first = out["clauses"][0]
    assert first["kind"] == "user-threshold" and first["threshold"] == 100_000_000
    assert first["source"] == "models/qwen/LICENSE"
    ev = first["evidence"]
    assert text[ev["start"] : ev["end"]] == ev["quote"]
    assert all("threshold" not in c for c in out["clauses"][1:])


def test_analyse_mit() -> None:
    out = analysis_to_json(analyse(read("mit.txt"), SOURCE))
    assert out == {"spdx": "MIT", "name": "MIT License", "clauses": []}


def test_restrictive_kinds_are_all_but_share_alike() -> None:
    assert RESTRICTIVE_KINDS == set(CLAUSE_KINDS) - {"share-alike"}

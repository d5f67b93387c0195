"""Restriction clauses in any licence text, each with the sentence that states it.

`detect_clauses` cuts a text into sentences (`text.sentences`), normalises each one (case,
quotes, hyphens, number formatting) and runs one small rule per clause kind over it. A rule
asks for the co-occurrence, within the sentence and often within a few words, of keyword
families (stems, so "train", "trained", "training" are one family), and some rules carry guards
against the standard clauses of open licences that use the same words. The vocabulary:

- ``user-threshold``: rights depend on a number of users or revenue ("more than 700 million
  monthly active users"); `Clause.threshold` is the number as an integer.
- ``attribution``: the licensee must show the licensor's brand ("Built with X") in a product or
  prefix derived models' names with it. Keeping copyright or NOTICE files (Apache-2.0 s. 4,
  MIT, BSD) and the BSD non-endorsement clause are not attribution in this sense.
- ``use-policy``: an acceptable-use policy, a list of prohibited uses or use restrictions.
- ``output-restriction``: outputs may not be used to train or improve other (competing) models.
- ``non-commercial``: commercial use is excluded.
- ``research-only``: research, evaluation, testing or non-production use only.
- ``geographic``: rights withheld in a named region ("not granted ... in the European Union").
- ``revocable``: the licensor may terminate, revoke or restrict use at will or remotely, or
  change binding terms at any time. Termination after a breach, and the patent-licence
  termination of Apache-2.0, are standard in open licences and do not count.
- ``pass-through``: downstream recipients must be bound by the same use restrictions.
- ``share-alike``: derivatives must carry the same licence (copyleft, CC ShareAlike).

`RESTRICTIVE_KINDS` is every kind but ``share-alike``: copyleft keeps a work open, so it is
reported as a clause but does not count against openness.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

from allmende.openness.evidence import CLAUSE_KINDS, Clause, ClauseKind, Source, Span
from allmende.openness.licenses.text import sentences, words
from allmende.openness.licenses.thresholds import user_threshold

RESTRICTIVE_KINDS: frozenset[ClauseKind] = frozenset(
    cast(ClauseKind, k) for k in CLAUSE_KINDS if k != "share-alike"
)


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _gap(n: int) -> str:
    """Up to `n` words between two patterns."""
    return rf"(?: \S+){{0,{n}}} "


OBLIGE = r"\b(?:must|shall|will|required|requires|require|need to|needs to|have to|has to|agree)\b"
OBLIGE_RE = _re(OBLIGE)
NEG = r"\b(?:not|never|no|nothing|none|cannot|nor|prohibited|forbidden)\b"

# --- the other kinds: one predicate over the padded words of a sentence ---------------------
_NOTICE = _re(r"\b(?:notice|notices|copyright|copyrights)\b")
_BRAND = _re(
    r"\b(?:built with|powered by|improved (?:using|with|by)|made with|enhanced (?:using|with|by))"
    r" [a-z0-9]"
)
_DISPLAY = _re(r"\b(?:display\w*|show\w*|feature|exhibit|present|acknowledg\w*|credit|mention)\b")
_PROMINENT = _re(r"\b(?:prominent\w*|conspicuous\w*|clearly|visibl[ey]|legibl[ey])\b")
_PLACE = _re(
    r"\b(?:user interfaces?|ui|website|web site|web page|webpage|about page|homepage|product"
    r"|products|documentation|blog\w*|app|apps|application|service|services|screen|packaging)\b"
)
_NAME_PREFIX = _re(
    r"\b(?:names?|naming|titles?)\b"
    + _gap(10)
    + r"(?:begin\w*|start\w*|prefix\w*|preced\w*|prepend\w*|commenc\w*|contain\w*|includ\w*"
    r"|incorporat\w*|bear\w*|carry|carries)\b"
    r"|\b(?:at|to|in) the (?:beginning|start|front) of" + _gap(6) + r"names?\b"
)
_MODELISH = _re(r"\b(?:models?|derivatives?|derived|fine tun\w*|variants?|versions?|llms?)\b")


def attribution(w: str) -> bool:
    if _BRAND.search(w) and (_DISPLAY.search(w) or _PLACE.search(w) or OBLIGE_RE.search(w)):
        return True
    if _NOTICE.search(w):
        return False
    if _DISPLAY.search(w) and _PROMINENT.search(w) and _PLACE.search(w):
        return True
    return bool(_NAME_PREFIX.search(w) and _MODELISH.search(w) and OBLIGE_RE.search(w))


_POLICY = _re(
    r"\b(?:acceptable|permitted|prohibited|allowed|responsible|restricted) (?:use|uses|usage)"
    r"(?: policy| policies| guidelines?)?\b|\b(?:use|usage|content) polic(?:y|ies)\b"
    r"|\buse (?:based )?restrictions?\b|\brestrictions? (?:on|regarding|concerning) (?:the )?use\b"
    r"|\baup\b|\bprohibited (?:activities|purposes|applications)\b"
)
_HARM = (
    r"(?:military|weapon\w*|warfare|surveil\w*|harm\w*|illegal\w*|unlawful\w*|discriminat\w*"
    r"|defam\w*|disinformation|misinformation|harass\w*|exploit\w*|violen\w*|medical advice"
    r"|critical infrastructure|law enforcement|minors|children|malware|spam\w*|deceiv\w*|deception"
    r"|impersonat\w*|fraud\w*|terror\w*|abus\w*|hate\w*|biometric\w*|social scoring|manipulat\w*"
    r"|nuclear|chemical|biological|following|purposes? of|any purpose that|in any way that|to)"
)
_AGREE_NOT_USE = _re(
    r"\b(?:agree\w*|undertake\w*|promise\w*|covenant\w*|represent\w*)(?: that you)?"
    r"(?: will| shall)? not (?:to )?(?:use|deploy|utili[sz]e|employ|apply|operate)\b"
)
_NOT_USE_FOR = _re(
    r"\b(?:will|shall|must|may|can) not (?:\S+ ){0,2}(?:use|be used|deploy|be deployed|utili[sz]e"
    r"|be utili[sz]ed|employ|apply)\b" + _gap(12) + r"(?:for|to|in|as)" + _gap(4) + _HARM + r"\b"
)


def use_policy(w: str) -> bool:
    if re.search(r"\bwithout (?:\S+ ){0,2}restriction", w) and not _POLICY.search(
        re.sub(r"\bwithout (?:\S+ ){0,2}restrictions?\b", "", w)
    ):
        return False
    if _POLICY.search(w):
        return True
    if re.search(r"\battachment [a-z]\b", w) and re.search(r"\b(?:restrict\w*|prohibit\w*)", w):
        return True
    return bool(_AGREE_NOT_USE.search(w) or _NOT_USE_FOR.search(w))


_OUTPUT = _re(
    r"\b(?:outputs?|results?|generat\w*|completions?|responses?|predictions?"
    r"|synthetic data|produced)\b"
)
_IMPROVE = _re(
    r"\b(?:train\w*|improv\w*|develop\w*|enhanc\w*|fine tun\w*|finetun\w*|distill\w*|build\w*"
    r"|creat\w*|bootstrap\w*|teach\w*|pre train\w*|pretrain\w*)\b"
)
_OTHER_MODEL = _re(
    r"\b(?:other|another|competing|compet\w*|rival|third party|different|separate|any other)"
    + _gap(4)
    + r"(?:models?|llms?|language models?|ai|systems?|products?|services?|foundation models?)\b"
    r"|\b(?:models?|llms?|systems?)" + _gap(3) + r"(?:that|which) compet\w*"
    r"|\b(?:models?|llms?|systems?) other than\b|\blarge language models?\b"
)
_PROHIBIT = _re(NEG + r"|\b(?:may only|solely|refrain|restricted from|no right|excluding|except)\b")


def output_restriction(w: str) -> bool:
    return bool(
        _OUTPUT.search(w) and _IMPROVE.search(w) and _OTHER_MODEL.search(w) and _PROHIBIT.search(w)
    )


_BOTH_COMMERCIAL = _re(
    r"\bcommercial\w* (?:and|or|as well as) non ?commercial\b|\bnon ?commercial (?:and|or)"
    r" commercial\b|\bnot limited to" + _gap(3) + r"commercial"
)
_NON_COMMERCIAL = _re(
    r"\bnon ?commercial\w*\b|\bnot for" + _gap(2) + r"commercial|\bno commercial\b"
    r"|\b(?:not|never|nor|cannot)(?: \S+){0,4} commercial\w*\b"
    r"|\bcommercial\w* (?:use|uses|usage|purposes?|exploitation|deployment|applications?"
    r"|activities|products?|services?)" + _gap(4) + r"(?:is |are )?(?:strictly )?(?:prohibited"
    r"|forbidden|not permitted|not allowed|excluded|disallowed|not licensed|not granted)\b"
    r"|\b(?:prohibit\w*|forbid\w*|exclud\w*|disallow\w*) (?:\S+ ){0,3}commercial\w*"
    r"|\bcommercial (?:use|uses|usage|purposes?|deployment|exploitation)"
    + _gap(4)
    + r"(?:requires?|subject to|needs?)"
    + _gap(4)
    + r"(?:separate|written|commercial|additional|prior) (?:licen[cs]e|agreement|permission)"
)


def non_commercial(w: str) -> bool:
    if re.search(r"\bthis (?:alternative|option)\b", w):
        return False  # GPL: one way of meeting a condition, "allowed only for noncommercial ..."
    return bool(_NON_COMMERCIAL.search(_BOTH_COMMERCIAL.sub(" ", w)))


_RESEARCHISH = (
    r"(?:research\w*|academic|scientific|educational|evaluat\w*|test\w*|experiment\w*"
    r"|personal|study\w*|non production|demonstration|benchmark\w*)"
)
_RESEARCH_ONLY = _re(
    r"\b" + _RESEARCHISH + r"(?: (?:and|or|,) \S+){0,3} (?:purposes?|uses?|use cases|activities"
    r"|settings|environments?) only\b|\bresearch use only\b"
    r"|\bonly (?:be )?(?:used |permitted |licensed |allowed )?(?:for|in|to|as part of)"
    + _gap(4)
    + _RESEARCHISH
    + r"\b|\b(?:solely|exclusively|strictly|purely|limited to)"
    + _gap(5)
    + _RESEARCHISH
    + r"\b|\bnon ?production\b|\bnot"
    + _gap(4)
    + r"(?:in|for|into|within) (?:a |any )?production\b"
    r"|\bproduction (?:use|uses|environments?|deployments?|systems?)"
    + _gap(3)
    + r"(?:is |are )?(?:not|prohibited|forbidden|excluded)\b"
)


def research_only(w: str) -> bool:
    return bool(_RESEARCH_ONLY.search(w))


_REGION = _re(
    r"\b(?:european union|eu|eea|european economic area|europe|united states|u s|usa|china"
    r"|mainland china|prc|people s republic of china|russia\w*|iran|north korea|dprk|cuba|syria"
    r"|crimea|belarus|venezuela|india|japan|south korea|united kingdom|uk|canada|australia|brazil"
    r"|germany|france|italy|spain|hong kong|macau|taiwan|singapore|switzerland|africa|asia)\b"
)
_WITHHOLD = _re(
    r"\bnot (?:being )?(?:granted|licensed|permitted|allowed|available|authori[sz]ed|extended"
    r"|apply|applicable|valid)\b|\bdo(?:es)? not (?:apply|extend|include|cover)\b|\bexclud\w*\b"
    r"|\bwithh[eo]ld\w*\b|\b(?:may|shall|must|will|can) not (?:\S+ ){0,2}(?:use|access|download"
    r"|deploy|distribute|offer|provide|make available|exercise)\b|\bprohibited\b|\brestricted\b"
    r"|\bno (?:rights?|license|licence) (?:is |are )?(?:granted|given)\b|\boutside of\b"
    r"|\bnone of (?:\S+ ){0,4}(?:is|are|shall be|will be) (?:granted|licensed|available)\b"
)
_LAW = _re(
    r"\b(?:governed by|governing law|jurisdiction|venue|courts?|arbitration|conflict of laws"
    r"|choice of law|export control\w*|export administration|sanctions? laws?)\b"
)


def geographic(w: str) -> bool:
    if _LAW.search(w):
        return False
    w = re.sub(r"\b\d{4,5}(?: \d{4})? usa\b", " ", w)  # a postal address
    for region in _REGION.finditer(w):
        window = w[max(0, region.start() - 160) : region.end() + 160]
        if _WITHHOLD.search(window):
            return True
    return False


_AT_WILL = _re(
    r"\b(?:at any time|at (?:its|our|their|the licensor s|\S+ s) (?:sole |absolute |own |"
    r"reasonable )*discretion|for any reason|for no reason|without (?:cause|reason|prior notice"
    r"|notice)|for convenience|unilaterally|with or without cause|at will)\b"
)
_END = _re(
    r"\b(?:terminat\w*|revok\w*|revocation|suspend\w*|suspension|cancel\w*|withdraw\w*|rescind\w*"
    r"|discontinu\w*)\b"
)
_NOT_END = _re(
    r"\b(?:not|never|no) (?:\S+ ){0,2}(?:terminat|revok|suspend|cancel|withdraw)\w*"
    r"|\b(?:you|licensee|recipient) (?:\S+ ){0,3}(?:terminat|cancel)\w*"
)
_REMOTE = _re(
    r"\bremotely\b"
    + r"|\breserves? the right to (?:\S+ ){0,3}(?:restrict\w*|terminat\w*|revok\w*|suspend\w*"
    r"|limit\w*|disabl\w*|block\w*|withdraw\w*|cancel\w*|shut\w*|deactivat\w*)"
)
_CHANGE = _re(
    r"\b(?:updat\w*|modif\w*|amend\w*|chang\w*|revis\w*)\b(?: \S+){0,8} (?:from time to time"
    r"|at any time)\b|\breserves? the right to (?:\S+ ){0,3}(?:updat|modif|amend|chang|revis)\w*"
)
_BINDING = _re(
    r"\b(?:binding|bind|bound|continued use|continuing to use|continue to use|will apply"
    r"|shall apply|effective|supersede\w*)\b"
)


def revocable(w: str) -> bool:
    if re.search(r"\brevocable\b", w) and not re.search(r"\b(?:non|ir) ?revocable\b", w):
        return True
    if _REMOTE.search(w):
        return True
    if _END.search(w) and _AT_WILL.search(w) and not _NOT_END.search(w):
        return True
    return bool(_CHANGE.search(w) and _BINDING.search(w) and not re.search(r"\byou may\b", w))


_DOWNSTREAM = (
    r"(?:downstream|recipients?|subsequent|third part\w*|end users?|users|licensees|sublicensees"
    r"|customers|anyone|any person|whomever|(?:legal |license |licence )?agreements?"
    r"|terms of (?:use|service))"
)
_RESTRICTIONS = (
    r"(?:restrictions?|use limitations|prohibitions?|prohibited uses?|use polic(?:y|ies)"
    r"|acceptable use|attachment [a-z])"
)
_PASS_STRONG = _re(
    r"\benforceable provisions?\b|\bflow(?:ed|s)? down\b|\bsame (?:use |usage )?restrictions\b"
    r"|\b(?:at least as|no less|equally) (?:restrictive|protective|stringent)\b"
    r"|\b(?:substantially )?(?:similar|equivalent|identical) (?:use )?restrictions\b"
    r"|\bpass\w* (?:\S+ ){0,4}(?:through|on|along)" + _gap(4) + _RESTRICTIONS
)
_PASS_INCLUDE = _re(
    r"\b(?:includ\w*|incorporat\w*|impos\w*|extend\w*|apply|applies|contain\w*|bind\w*|bound"
    r"|requir\w*|reproduc\w*|compl\w*|adher\w*|observ\w*|honou?r\w*|respect\w*|subject to)\b"
)
_PASS_BOUND = _re(
    r"\b(?:bind\w*|bound|compl\w*|adhere\w*|agree\w*)"
    + _gap(8)
    + r"(?:same|these|such|its|the) (?:terms|restrictions|conditions|obligations|rules)"
)
_NO_DOWNSTREAM_RESTRICTIONS = _re(
    r"\b(?:no|not) (?:\S+ ){0,3}(?:impose|offer|add|apply)\b|\bno downstream restrictions\b"
)


def pass_through(w: str) -> bool:
    if _NO_DOWNSTREAM_RESTRICTIONS.search(w):
        return False
    if _PASS_STRONG.search(w):
        return True
    if not (OBLIGE_RE.search(w) and re.search(r"\b" + _DOWNSTREAM + r"\b", w)):
        return False
    if re.search(r"\b" + _RESTRICTIONS + r"\b", w) and _PASS_INCLUDE.search(w):
        return True
    return bool(
        _PASS_BOUND.search(w)
        and re.search(
            r"\b(?:downstream|recipients?|subsequent"
            r"|third part\w*|end users?|users)\b",
            w,
        )
    )


_SHARE_STRONG = _re(r"\bshare ?alike\b|\bcopyleft\b")
_UNDER_SAME = _re(
    r"\b(?:under|on|upon|with) (?:the )?(?:terms (?:and conditions )?of )?(?:this|the same"
    r"|an identical|a compatible|the gnu(?: \S+){1,3} public) (?:license|licence|agreement|terms)\b"
    r"|\bsame licen[cs]e\b"
)
_DERIVED = _re(
    r"\b(?:derivative\w*|derived|modif\w*|adapt\w*|based on|entire work|as a whole|covered works?"
    r"|combined|larger work|work that you distribute|modified versions?|whole of the work)\b"
)


_MUST = r"\b(?:must|shall|required to|requires?|agree to|need to|has to|have to)\b"


def share_alike(w: str) -> bool:
    if _SHARE_STRONG.search(w):
        return True
    must = re.search(_MUST + r"(?: \S+){0,45} ", w)
    return bool(must and _UNDER_SAME.search(w, must.start()) and _DERIVED.search(w))


# A title line ("Mistral AI Non-Production License"): short, no final stop, names a licence.
_TITLE_WORDS = re.compile(r"\b(?:license|licence|agreement|terms)\b")


def _is_heading(sentence: str, w: str) -> bool:
    return (
        not sentence.rstrip().endswith((".", ";", ":", "!", "?"))
        and w.count(" ") < 12
        and _TITLE_WORDS.search(w) is not None
        and re.search(r"\b(?:must|shall|may|will|not|only)\b", w) is None
    )


_PREDICATES: tuple[tuple[ClauseKind, Callable[[str], bool]], ...] = (
    ("attribution", attribution),
    ("use-policy", use_policy),
    ("output-restriction", output_restriction),
    ("non-commercial", non_commercial),
    ("research-only", research_only),
    ("geographic", geographic),
    ("revocable", revocable),
    ("pass-through", pass_through),
    ("share-alike", share_alike),
)


def detect_clauses(text: str, source: Source) -> list[Clause]:
    """All restriction clauses in `text`: at most one per kind per sentence, in text order."""
    found: list[Clause] = []
    for s in sentences(text):
        w = words(s.text)
        if _is_heading(s.text, w):
            continue
        padded = f" {w} "
        span = Span(s.start, s.end, s.text)
        threshold = user_threshold(w.split())
        if threshold is not None:
            found.append(Clause("user-threshold", span, source, threshold))
        for kind, predicate in _PREDICATES:
            if predicate(padded):
                found.append(Clause(kind, span, source))
    return found

"""Which SPDX ids count as open, the way the Model Openness Tool decides it.

The MOT (`LicenseHandler.php::isOpenSourceLicense`, see docs/openness.md and the research notes,
section 1.3) calls a licence open if its SPDX id is OSI-approved, FSF-libre, in its list of open
data licences, or OpenMDW-1.0. license-expression's data carries no OSI/FSF flags, so the ids are
listed here: the SPDX License List's `isOsiApproved` and `isFsfLibre` ids for the licences found
in practice (this list is not exhaustive: obscure ids missing here count as not open).
Deprecated spellings (GPL-3.0, LGPL-2.1+) are covered because ids are canonicalised first.
"""

from __future__ import annotations

OSI_APPROVED = frozenset(
    """
    0BSD AAL AFL-1.1 AFL-1.2 AFL-2.0 AFL-2.1 AFL-3.0 AGPL-3.0-only AGPL-3.0-or-later APL-1.0
    APSL-1.0 APSL-1.1 APSL-1.2 APSL-2.0 Apache-1.1 Apache-2.0 Artistic-1.0 Artistic-1.0-Perl
    Artistic-1.0-cl8 Artistic-2.0 BSD-1-Clause BSD-2-Clause BSD-2-Clause-Patent BSD-3-Clause
    BSD-3-Clause-LBNL BSL-1.0 BlueOak-1.0.0 CAL-1.0 CAL-1.0-Combined-Work-Exception CATOSL-1.1
    CDDL-1.0 CECILL-2.1 CERN-OHL-P-2.0 CERN-OHL-S-2.0 CERN-OHL-W-2.0 CNRI-Python CPAL-1.0
    CPL-1.0 CUA-OPL-1.0 ECL-1.0 ECL-2.0 EFL-1.0 EFL-2.0 EPL-1.0 EPL-2.0 EUDatagrid EUPL-1.1
    EUPL-1.2 Entessa Fair Frameworx-1.0 GPL-2.0-only GPL-2.0-or-later GPL-3.0-only
    GPL-3.0-or-later HPND ICU IPA IPL-1.0 ISC Intel Jam LGPL-2.0-only LGPL-2.0-or-later
    LGPL-2.1-only LGPL-2.1-or-later LGPL-3.0-only LGPL-3.0-or-later LPL-1.0 LPL-1.02 LPPL-1.3c
    LiLiQ-P-1.1 LiLiQ-R-1.1 LiLiQ-Rplus-1.1 MIT MIT-0 MIT-Modern-Variant MPL-1.0 MPL-1.1 MPL-2.0
    MPL-2.0-no-copyleft-exception MS-PL MS-RL MirOS Motosoto MulanPSL-2.0 Multics NASA-1.3 NCSA
    NGPL NPOSL-3.0 NTP Naumen Nokia OCLC-2.0 OFL-1.1 OFL-1.1-RFN OFL-1.1-no-RFN OGTSL OLDAP-2.8
    OSET-PL-2.1 OSL-1.0 OSL-2.0 OSL-2.1 OSL-3.0 PHP-3.0 PHP-3.01 PostgreSQL Python-2.0 QPL-1.0
    RPL-1.1 RPL-1.5 RPSL-1.0 RSCPL SISSL SPL-1.0 SimPL-2.0 Sleepycat UCL-1.0 UPL-1.0
    Unicode-DFS-2016 Unicode-3.0 Unlicense VSL-1.0 W3C Watcom-1.0 Xnet ZPL-2.0 ZPL-2.1 Zlib
    """.split()
)

FSF_LIBRE = frozenset(
    """
    AFL-1.1 AFL-1.2 AFL-2.0 AFL-2.1 AFL-3.0 AGPL-1.0 AGPL-3.0-only AGPL-3.0-or-later APSL-2.0
    Apache-1.0 Apache-1.1 Apache-2.0 Artistic-2.0 BSD-2-Clause BSD-3-Clause BSD-3-Clause-Clear
    BSD-4-Clause BSL-1.0 CC-BY-4.0 CC-BY-SA-4.0 CC0-1.0 CDDL-1.0 CECILL-2.0 CPAL-1.0 CPL-1.0
    ClArtistic ECL-2.0 EFL-2.0 EPL-1.0 EPL-2.0 EUDatagrid EUPL-1.1 EUPL-1.2 FTL GFDL-1.1-only
    GFDL-1.1-or-later GFDL-1.2-only GFDL-1.2-or-later GFDL-1.3-only GFDL-1.3-or-later
    GPL-2.0-only GPL-2.0-or-later GPL-3.0-only GPL-3.0-or-later HPND IJG IPA IPL-1.0 ISC Imlib2
    Intel LGPL-2.1-only LGPL-2.1-or-later LGPL-3.0-only LGPL-3.0-or-later LPL-1.02 LPPL-1.2
    LPPL-1.3a MIT MPL-1.1 MPL-2.0 MS-PL MS-RL NCSA NOSL NPL-1.0 NPL-1.1 ODbL-1.0 OFL-1.0
    OFL-1.1 OLDAP-2.3 OLDAP-2.7 OSL-1.0 OSL-1.1 OSL-2.0 OSL-2.1 OSL-3.0 OpenSSL PHP-3.01
    Python-2.0 QPL-1.0 RPSL-1.0 Ruby SISSL SMLNJ SPL-1.0 Sleepycat UPL-1.0 Unlicense Vim W3C
    WTFPL X11 XFree86-1.1 YPL-1.1 ZPL-2.0 ZPL-2.1 Zend-2.0 Zimbra-1.3 Zlib xinetd
    """.split()
)

# The MOT's OPEN_DATA_LICENSES (CC-BY / CC-BY-SA "including ported variants": the unported and
# international ids are listed; ported ids such as CC-BY-3.0-DE are matched by prefix).
OPEN_DATA = frozenset(
    """
    CC0-1.0 CC-BY-1.0 CC-BY-2.0 CC-BY-2.5 CC-BY-3.0 CC-BY-4.0 CC-BY-SA-1.0 CC-BY-SA-2.0
    CC-BY-SA-2.5 CC-BY-SA-3.0 CC-BY-SA-4.0 CDLA-Permissive-1.0 CDLA-Permissive-2.0
    CDLA-Sharing-1.0 ODC-PDDL-1.0 PDDL-1.0 ODC-By-1.0 ODbL-1.0 GFDL-1.3 GFDL-1.3-only
    GFDL-1.3-or-later OGL-Canada-2.0 OGL-UK-2.0 OGL-UK-3.0
    """.split()
)
OPEN_DATA_PREFIXES: tuple[str, ...] = tuple(
    "CC-BY-1.0- CC-BY-2.0- CC-BY-2.5- CC-BY-3.0- CC-BY-SA-2.0- CC-BY-SA-2.1- CC-BY-SA-2.5-"
    " CC-BY-SA-3.0-".split()
)

# The MOT's OPEN_LICENSES. OpenMDW-1.0 may be missing from license-expression's SPDX data; the
# ScanCode key it uses instead is accepted as the same licence.
OPEN_OTHER = frozenset({"OpenMDW-1.0", "LicenseRef-scancode-openmdw-1.0"})


def is_open_id(spdx_id: str) -> bool:
    """One canonical SPDX id (no operators): OSI, FSF, MOT open-data or OpenMDW."""
    if spdx_id in OSI_APPROVED or spdx_id in FSF_LIBRE:
        return True
    if spdx_id in OPEN_DATA or spdx_id in OPEN_OTHER:
        return True
    return spdx_id.startswith(OPEN_DATA_PREFIXES)

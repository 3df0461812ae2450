# SPDX-License-Identifier: Apache-2.0
"""Host link: UART PHY (:mod:`.uart`), frame engine (:mod:`.frame`) and the wire protocol
(:mod:`.protocol`, pure Python, shared with the driver in ``sw/driver``)."""

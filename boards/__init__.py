# SPDX-License-Identifier: Apache-2.0
"""One module per board: platform subclass, preset and build/report flow."""

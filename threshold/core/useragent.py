"""Browsers and operating systems as people name them: "Chrome on macOS".

User-Agent strings are parsed with ua-parser (about 1 ms each, the first call
compiles its patterns), so results are cached and parsing stays off the sign-in
path: that path stores the raw header, and pages describe it when they show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ua_parser import parse

# ua-parser's families, renamed to what people see on their screens.
_BROWSERS = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome",
    "HeadlessChrome": "Chrome",
    "Chromium": "Chromium",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Samsung Internet": "Samsung Internet",
}
_SYSTEMS = {
    "Mac OS X": "macOS",
    "Chrome OS": "ChromeOS",
    "Ubuntu": "Linux",
    "Fedora": "Linux",
    "Debian": "Linux",
    "Linux Mint": "Linux",
    "Arch Linux": "Linux",
    "openSUSE": "Linux",
}

# ua-parser names any client its catch-all rule matches after the words before "bot",
# "spider", ... in the header ("IT Helpdesk approve now Bot"): whoever sends the request
# chooses them, and the emails and pages that name the browser would repeat them.
_CATCH_ALL = re.compile(r"(?:bot|spider|crawl[a-z]*|archiver|indexer|scraper)$", re.IGNORECASE)
# Threshold Verify on a desktop: "ThresholdVerify/0.1.0 (Linux)" (verify/threshold_verify).
_DEVICE_APP = re.compile(r"ThresholdVerify/[0-9.]+ \(([A-Za-z]+)\)")

# The platforms the set-up guides cover, by the operating system's name above.
PLATFORMS = {
    "macOS": "macos",
    "Windows": "windows",
    "iOS": "ios",
    "iPadOS": "ios",
    "Android": "android",
    "ChromeOS": "chromeos",
    "Linux": "linux",
}


@dataclass(frozen=True)
class Client:
    browser: str  # "" when unknown
    system: str  # "" when unknown

    @property
    def label(self) -> str:
        """ "Chrome on macOS", "Safari", "Windows", or "Unknown browser"."""
        if self.browser and self.system:
            return f"{self.browser} on {self.system}"
        return self.browser or self.system or "Unknown browser"

    @property
    def platform(self) -> str:
        """The set-up guide for this system ("macos", "windows", ...), or ""."""
        return PLATFORMS.get(self.system, "")


@lru_cache(maxsize=1024)
def describe(user_agent: str) -> Client:
    if not user_agent:
        return Client("", "")
    device_app = _DEVICE_APP.fullmatch(user_agent)
    if device_app is not None:
        named = {"Darwin": "macOS", "Windows": "Windows", "Linux": "Linux"}
        return Client("Threshold Verify", named.get(device_app.group(1), ""))
    result = parse(user_agent[:512])
    browser = result.user_agent.family if result.user_agent else ""
    system = result.os.family if result.os else ""
    if browser == "Other" or _CATCH_ALL.search(browser):
        browser = ""
    browser = _BROWSERS.get(browser, browser)
    system = "" if system == "Other" else _SYSTEMS.get(system, system)
    return Client(browser, system)

"""What a person sees of a page, measured in the browser: words broken across lines, the page's
width against the window's, the batch rows' heights and how many are entirely above the fold."""

from __future__ import annotations

# Every visible text node, word by word (a word: a run of letters, digits and underscores, so an
# id or "in_progress" is one word, and the breaks line breaking allows between punctuation, after
# "12-" in "2026-12-07" or "jobs/" in a path, are between words): a word whose characters lie on
# more than one line (its Range's client rects do not all share a line) is broken inside.
BROKEN_WORDS = """() => {
    const broken = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const parent = node.parentElement;
        if (!parent || parent.closest("script, style, template, title, [hidden]")) continue;
        const text = node.textContent;
        const word = /[\\p{L}\\p{N}_]+/gu;
        for (let match = word.exec(text); match; match = word.exec(text)) {
            if (match[0].length < 2) continue;
            range.setStart(node, match.index);
            range.setEnd(node, match.index + match[0].length);
            const rects = Array.from(range.getClientRects()).filter((r) => r.width > 0 && r.height > 0);
            const onTwoLines = rects.some((a) => rects.some((b) => b.top >= a.bottom - 1));
            if (onTwoLines) {
                const where = parent.closest("[id]");
                broken.push(match[0].slice(0, 60) + " (in <" + parent.tagName.toLowerCase() + "." +
                    Array.from(parent.classList).join(".") + ">" + (where ? " of #" + where.id : "") + ")");
            }
        }
    }
    return broken;
}"""

PAGE_WIDTH = """() => ({
    scroll: document.scrollingElement.scrollWidth,
    window: window.innerWidth,
})"""

ROWS = """() => {
    const rows = Array.from(document.querySelectorAll("table.batches tr.batch-row"));
    const heights = rows.map((row) => row.getBoundingClientRect().height).sort((a, b) => a - b);
    const fold = window.innerHeight;
    return {
        count: rows.length,
        median: heights.length ? heights[Math.floor((heights.length - 1) / 2)] : null,
        tallest: heights.length ? heights[heights.length - 1] : null,
        above_fold: rows.filter((row) => {
            const box = row.getBoundingClientRect();
            return box.top >= 0 && box.bottom <= fold;
        }).length,
    };
}"""


def broken_words(page) -> list[str]:
    return page.evaluate(BROKEN_WORDS)


def page_width(page) -> dict:
    return page.evaluate(PAGE_WIDTH)


def rows(page) -> dict:
    return page.evaluate(ROWS)

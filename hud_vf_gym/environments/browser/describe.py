"""The text observation: what is on the screen as text, for models that cannot see screenshots.

`DESCRIBE_SCRIPT` runs in the page and lists, in document order, the text and the clickable elements that are
visible in the viewport (not hidden, not clipped away by a scrolled container), each with its box. Clickable means a
link, button, form control, list-box option, label, summary, an element with an ARIA widget role, a tab index or an
`onclick` attribute, or the outermost element with a pointer cursor (how MiniWoB marks its jQuery-bound widgets).
`format_description` turns that into the text the agent reads, in screen pixels (page pixels times the zoom):

```
Page "log-in (seed 3)": the screen (1280x800) shows y 0-800 of a 1280x1002 page; scroll down for more.
Text on screen (left, top; width x height):
  "Log in with the username "maya7" and the password "orbit512"." at (24, 14) 611x27
Clickable elements on screen (click the centre):
  [1] label "Username" centre (67, 113) size 86x25
  [2] textbox "Username" centre (190, 148) size 340x39 value=""
  [3] button "Log in" centre (75, 287) size 90x41
```

Strings are JSON-quoted, so a label with quotes stays one token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["DESCRIBE_SCRIPT", "MAX_ITEMS", "format_description"]

MAX_ITEMS = 150  # per list; a page with more visible items than this is summarised by its first ones
MAX_TEXT_CHARS = 200  # one text run; longer runs are cut
MAX_LABEL_CHARS = 80
MAX_OPTIONS = 20  # options listed for a drop-down <select>

_DESCRIBE_TEMPLATE = """
() => {
  const MAX_ITEMS = __MAX_ITEMS__, MAX_TEXT = __MAX_TEXT__, MAX_LABEL = __MAX_LABEL__, MAX_OPTIONS = __MAX_OPTIONS__;
  const vw = window.innerWidth, vh = window.innerHeight;
  const clean = s => (s || '').replace(/\\s+/g, ' ').trim();
  const WIDGET_ROLES = new Set(['button', 'link', 'checkbox', 'radio', 'tab', 'menuitem', 'option', 'treeitem',
    'switch', 'combobox', 'textbox', 'listbox', 'slider', 'spinbutton', 'gridcell']);
  const FORM_TAGS = new Set(['INPUT', 'SELECT', 'TEXTAREA', 'OPTION']);
  const NATIVE = 'a[href], button, input, select, textarea, label, summary, [onclick], [contenteditable=""], ' +
    '[contenteditable="true"]';
  const visible = el => el.checkVisibility ? el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}) : true;
  const visibleRect = el => {
    const r = el.getBoundingClientRect();
    let left = Math.max(r.left, 0), top = Math.max(r.top, 0), right = Math.min(r.right, vw);
    let bottom = Math.min(r.bottom, vh);
    for (let p = el.parentElement; p && p !== document.body && p !== document.documentElement; p = p.parentElement) {
      const s = getComputedStyle(p);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
        const pr = p.getBoundingClientRect();
        left = Math.max(left, pr.left); top = Math.max(top, pr.top);
        right = Math.min(right, pr.right); bottom = Math.min(bottom, pr.bottom);
      }
    }
    if (right - left < 1 || bottom - top < 1) return null;
    return {x: left, y: top, w: right - left, h: bottom - top};
  };
  const clickable = el => {
    if (el.tagName === 'INPUT' && el.type === 'hidden') return false;
    if (el.matches(NATIVE)) return true;
    if (el.tagName === 'OPTION') { const s = el.closest('select'); return !!s && (s.size > 1 || s.multiple); }
    const role = el.getAttribute('role');
    if (role && WIDGET_ROLES.has(role)) return true;
    if (el.hasAttribute('tabindex') && el.tabIndex >= 0) return true;
    if (getComputedStyle(el).cursor !== 'pointer') return false;
    return !el.parentElement || getComputedStyle(el.parentElement).cursor !== 'pointer';
  };
  const roleOf = el => {
    const role = el.getAttribute('role');
    if (role) return role;
    const tag = el.tagName;
    if (tag === 'A') return 'link';
    if (tag === 'BUTTON') return 'button';
    if (tag === 'INPUT') {
      const type = (el.type || 'text').toLowerCase();
      if (['button', 'submit', 'reset', 'image'].includes(type)) return 'button';
      if (type === 'checkbox' || type === 'radio') return type;
      if (type === 'range') return 'slider';
      return 'textbox';
    }
    if (tag === 'TEXTAREA') return 'textbox';
    if (tag === 'SELECT') return (el.size > 1 || el.multiple) ? 'listbox' : 'select';
    if (tag === 'OPTION') return 'option';
    if (tag === 'LABEL') return 'label';
    return 'clickable';
  };
  const labelOf = el => {
    const aria = el.getAttribute('aria-label');
    if (aria) return clean(aria);
    if (el.tagName === 'INPUT' && ['button', 'submit', 'reset'].includes(el.type)) return clean(el.value);
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName)) {
      if (el.labels && el.labels.length) return clean(el.labels[0].innerText);
      return clean(el.placeholder || el.title || el.name || '');
    }
    return clean(el.innerText || el.textContent || el.title || el.getAttribute('alt') || '');
  };
  const taken = new Set();
  const insideTaken = el => { for (let p = el; p; p = p.parentElement) if (taken.has(p)) return true; return false; };
  const elements = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (elements.length >= MAX_ITEMS) break;
    if (!clickable(el) || (!FORM_TAGS.has(el.tagName) && insideTaken(el.parentElement)) || !visible(el)) continue;
    const box = visibleRect(el);
    if (!box) continue;
    taken.add(el);
    const cx = box.x + box.w / 2, cy = box.y + box.h / 2;
    const hit = document.elementFromPoint(cx, cy);
    const item = {role: roleOf(el), label: labelOf(el).slice(0, MAX_LABEL), box: box,
      covered: !(hit && (hit === el || el.contains(hit) || hit.contains(el) || (el.control && el.control === hit)))};
    if (el.tagName === 'INPUT' && (el.type === 'checkbox' || el.type === 'radio')) item.checked = el.checked;
    else if (['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName)) item.value = el.value;
    const plain = ['text', 'checkbox', 'radio', 'button', 'submit'];
    if (el.tagName === 'INPUT' && !plain.includes(el.type)) item.type = el.type;
    if (el.tagName === 'OPTION') item.selected = el.selected;
    if (el.tagName === 'SELECT' && item.role === 'select')
      item.options = Array.from(el.options).slice(0, MAX_OPTIONS).map(o => clean(o.text));
    if (el.disabled) item.disabled = true;
    if (document.activeElement === el) item.focused = true;
    elements.push(item);
  }
  const texts = [];
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'OPTION', 'TEXTAREA', 'TITLE', 'SELECT']);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode() && texts.length < MAX_ITEMS) {
    const node = walker.currentNode, parent = node.parentElement, text = clean(node.textContent);
    if (!text || !parent || SKIP.has(parent.tagName) || insideTaken(parent) || !visible(parent)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const r = range.getBoundingClientRect();
    if (r.width < 1 || r.height < 1 || r.right <= 0 || r.bottom <= 0 || r.left >= vw || r.top >= vh) continue;
    texts.push({text: text.slice(0, MAX_TEXT), box: {x: r.left, y: r.top, w: r.width, h: r.height}});
  }
  const root = document.scrollingElement || document.documentElement;
  return {title: document.title, width: vw, height: vh, scroll_x: window.scrollX, scroll_y: window.scrollY,
    page_width: Math.max(root.scrollWidth, vw), page_height: Math.max(root.scrollHeight, vh),
    texts: texts, elements: elements};
}
"""


def _fill_limits(template: str) -> str:
    """Put the Python-side limits into the script, so the two never disagree."""
    limits = {
        "MAX_ITEMS": MAX_ITEMS,
        "MAX_TEXT": MAX_TEXT_CHARS,
        "MAX_LABEL": MAX_LABEL_CHARS,
        "MAX_OPTIONS": MAX_OPTIONS,
    }
    for name, value in limits.items():
        template = template.replace(f"__{name}__", str(value))
    return template


DESCRIBE_SCRIPT = _fill_limits(_DESCRIBE_TEMPLATE)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _scaled_box(box: Mapping[str, Any], zoom: float) -> tuple[int, int, int, int]:
    """A page-pixel box as (left, top, width, height) in screen pixels."""
    left, top = round(box["x"] * zoom), round(box["y"] * zoom)
    return left, top, max(1, round(box["w"] * zoom)), max(1, round(box["h"] * zoom))


def _page_line(description: Mapping[str, Any], zoom: float) -> str:
    width, height = round(description["width"] * zoom), round(description["height"] * zoom)
    page_width, page_height = round(description["page_width"] * zoom), round(description["page_height"] * zoom)
    top, left = round(description["scroll_y"] * zoom), round(description["scroll_x"] * zoom)
    line = f"Page {_quote(description.get('title') or '')}: the screen ({width}x{height}) shows "
    line += f"y {top}-{top + height}" + (f", x {left}-{left + width}" if page_width > width else "")
    line += f" of a {page_width}x{page_height} page"
    hints = []
    if top + height < page_height:
        hints.append("scroll down for more")
    if top > 0:
        hints.append("scroll up for the top")
    return line + (f"; {' and '.join(hints)}." if hints else ".")


def _element_line(index: int, element: Mapping[str, Any], zoom: float) -> str:
    left, top, width, height = _scaled_box(element["box"], zoom)
    centre_x, centre_y = left + width // 2, top + height // 2
    line = f"  [{index}] {element['role']} {_quote(element.get('label') or '')} centre ({centre_x}, {centre_y})"
    line += f" size {width}x{height}"
    if "type" in element:
        line += f" type={element['type']}"
    if "value" in element:
        line += f" value={_quote(str(element['value']))}"
    if "options" in element:
        line += f" options={_quote(', '.join(element['options']))}"
    for flag in ("checked", "selected"):
        if flag in element:
            line += f" {flag}" if element[flag] else f" not-{flag}"
    for flag in ("disabled", "focused", "covered"):
        if element.get(flag):
            line += f" {flag}"
    return line


def format_description(description: Mapping[str, Any], zoom: float = 1.0) -> str:
    """Write what `DESCRIBE_SCRIPT` returned as the agent's text observation, in screen pixels.

    Args:
        description: the script's result.
        zoom: screen pixels per page pixel (the browser's device scale factor).
    """
    lines = [_page_line(description, zoom)]
    texts = description.get("texts") or []
    lines.append("Text on screen (left, top; width x height):" if texts else "No text on screen.")
    for text in texts:
        left, top, width, height = _scaled_box(text["box"], zoom)
        lines.append(f"  {_quote(text['text'])} at ({left}, {top}) {width}x{height}")
    elements = description.get("elements") or []
    lines.append("Clickable elements on screen (click the centre):" if elements else "No clickable elements on screen.")
    lines += [_element_line(index, element, zoom) for index, element in enumerate(elements, start=1)]
    return "\n".join(lines)

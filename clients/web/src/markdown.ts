// A small markdown renderer that builds DOM nodes and never parses HTML: text goes through
// textContent only, so instructions cannot inject markup or script. Supports headings,
// paragraphs, - / * / 1. lists, **bold**, *italic*, `code`, and [links](https://...).

function inline(text: string, into: HTMLElement): void {
  const pattern = /(\*\*([^*]+)\*\*|\*([^*]+)\*|_([^_]+)_|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\))/g;
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    into.append(text.slice(last, m.index));
    let node: HTMLElement;
    if (m[2] !== undefined) {
      node = document.createElement("strong");
      node.textContent = m[2];
    } else if (m[3] !== undefined || m[4] !== undefined) {
      node = document.createElement("em");
      node.textContent = m[3] ?? m[4];
    } else if (m[5] !== undefined) {
      node = document.createElement("code");
      node.textContent = m[5];
    } else {
      let href = "";
      try {
        const url = new URL(m[7], location.href);
        if (url.protocol === "http:" || url.protocol === "https:") href = url.href;
      } catch {
        // not a URL: shown as text
      }
      if (!href) {
        into.append(m[0]);
        last = m.index! + m[0].length;
        continue;
      }
      const a = document.createElement("a");
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.textContent = m[6];
      node = a;
    }
    into.append(node);
    last = m.index! + m[0].length;
  }
  into.append(text.slice(last));
}

export function renderMarkdown(source: string): DocumentFragment {
  const out = document.createDocumentFragment();
  let para: string[] = [];
  let list: HTMLElement | null = null;
  const flush = () => {
    if (para.length) {
      const p = document.createElement("p");
      inline(para.join(" "), p);
      out.append(p);
      para = [];
    }
  };
  for (const raw of source.replace(/\r\n?/g, "\n").split("\n")) {
    const line = raw.trimEnd();
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const bullet = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (!line.trim()) {
      flush();
      list = null;
    } else if (heading) {
      flush();
      list = null;
      const h = document.createElement(`h${Math.min(6, heading[1].length + 2)}`);
      inline(heading[2], h);
      out.append(h);
    } else if (bullet) {
      flush();
      const ordered = /\d/.test(bullet[1]);
      if (!list || (list.tagName === "OL") !== ordered) {
        list = document.createElement(ordered ? "ol" : "ul");
        out.append(list);
      }
      const li = document.createElement("li");
      inline(bullet[2], li);
      list.append(li);
    } else if (list && /^\s+\S/.test(raw) && list.lastElementChild) {
      list.lastElementChild.append(" ");
      inline(line.trim(), list.lastElementChild as HTMLElement); // continuation of an item
    } else {
      list = null;
      para.push(line.trim());
    }
  }
  flush();
  return out;
}

# Flattens the block YAML of a cloud-init seed into "path<TAB>value" lines, maps by key and
# sequences by index (users.0.ssh_authorized_keys.0), for a guest that has no YAML library.
# Covers what cloud-config files use: block maps and sequences (indented or not), plain, 'single'
# and "double" quoted scalars, also over several lines (as YAML writers fold long SSH keys),
# flow sequences of scalars ([a, b]), literal and folded block scalars (| and >), comments and
# document markers. Anchors, tags and flow maps are not read.
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function join(p, k) { return p == "" ? k : p "." k }
function scalar(v,    out, i, c, n) {
  v = trim(v)
  if (substr(v, 1, 1) == "'") {
    v = substr(v, 2); sub(/'[ \t]*(#.*)?$/, "", v); gsub(/''/, "'", v); return v
  }
  if (substr(v, 1, 1) == "\"") {
    v = substr(v, 2); sub(/"[ \t]*(#.*)?$/, "", v)
    out = ""; n = length(v)
    for (i = 1; i <= n; i++) {
      c = substr(v, i, 1)
      if (c == "\\" && i < n) {
        c = substr(v, ++i, 1)
        if (c == "n") c = "\n"; else if (c == "t") c = "\t"
      }
      out = out c
    }
    return out
  }
  sub(/[ \t]+#.*$/, "", v)
  if (v == "~" || v == "null") return ""
  return v
}
# A scalar is held until the next line shows whether it goes on (more indented than `owner`).
function emit(p, v, owner,    items, n, i) {
  flush_held()
  v = trim(v)
  if (v ~ /^\[.*\]$/) {
    v = substr(v, 2, length(v) - 2)
    if (trim(v) == "") return
    n = split(v, items, ",")
    for (i = 1; i <= n; i++) print join(p, i - 1) "\t" scalar(items[i])
    return
  }
  if (v == "{}") return
  held = p; hraw = v; hcol = owner
}
function flush_held() {
  if (held == "") return
  print held "\t" scalar(hraw)
  held = ""
}
# One logical line: `text` starting at column `col`.
function handle(col, text,    p, rest, rcol, key, val, m) {
  if (pending != "") {
    if (col > pcol || (col == pcol && text ~ /^-( |$)/ && pseq)) {
      sp++; ind[sp] = col; path[sp] = pending; kind[sp] = (text ~ /^-( |$)/) ? "seq" : "map"; cnt[sp] = 0
    } else print pending "\t"
    pending = ""
  }
  while (sp > 0 && (col < ind[sp] || (col == ind[sp] && kind[sp] == "seq" && text !~ /^-( |$)/))) sp--
  p = sp ? path[sp] : ""
  if (text ~ /^-( |$)/) {
    if (!(sp && kind[sp] == "seq" && ind[sp] == col)) return
    p = join(p, cnt[sp]++)
    rest = substr(text, 2); m = match(rest, /[^ ]/)
    if (!m) { pending = p; pcol = col; pseq = 0; return }
    rcol = col + m; rest = substr(rest, m)
    if (rest ~ /^[^'"\[{ #][^:]*:( |$)/) {
      sp++; ind[sp] = rcol; path[sp] = p; kind[sp] = "map"; cnt[sp] = 0
      handle(rcol, rest)
    } else emit(p, rest, col)
    return
  }
  if (match(text, /^[^ #][^:]*:( |$)/)) {
    key = trim(substr(text, 1, index(text, ":") - 1)); gsub(/^["']|["']$/, "", key)
    val = trim(substr(text, index(text, ":") + 1))
    p = join(p, key)
    if (val == "" || val ~ /^#/) { pending = p; pcol = col; pseq = 1; return }
    if (val ~ /^[|>][-+]?$/) { block = p; bcol = col; bfold = (substr(val, 1, 1) == ">"); btext = ""; bind = -1; return }
    emit(p, val, col)
  }
}
function flush_block() {
  if (block == "") return
  if (!bkeep) sub(/\n+$/, "", btext)
  print block "\t" btext
  block = ""
}
BEGIN { sp = 0; pending = ""; block = ""; held = "" }
{
  sub(/\r$/, "")
  line = $0
  if (block != "") {
    m = match(line, /[^ ]/)
    if (!m || m - 1 > bcol) {
      if (m && bind < 0) bind = m - 1
      chunk = m ? substr(line, bind + 1) : ""
      btext = btext (btext == "" ? "" : (bfold && chunk != "" ? " " : "\n")) chunk
      next
    }
    flush_block()
  }
  if (line ~ /^[ \t]*(#.*)?$/ || line ~ /^(---|\.\.\.)([ \t]|$)/) next
  m = match(line, /[^ ]/)
  if (held != "" && m - 1 > hcol) { hraw = hraw " " trim(substr(line, m)); next }
  flush_held()
  handle(m - 1, substr(line, m))
}
END { flush_held(); flush_block(); if (pending != "") print pending "\t" }

# `make help`: every "target: ... ## description [VAR=default ...]" line of the Makefiles, the
# bracketed variables on a line of their own, then the "#> NAME | meaning" variables with the
# defaults their "NAME ?= value" lines give. Run as: awk -f tools/help.awk $(MAKEFILE_LIST)
/^[A-Z_]+[ \t]*\?=/ {
  name = $1; value = $0
  sub(/^[A-Z_]+[ \t]*\?=[ \t]*/, "", value)
  defaults[name] = value
}
/^#> / {
  line = substr($0, 4); split(line, parts, / \| /)
  gsub(/ +$/, "", parts[1])
  order[++nvars] = parts[1]; meaning[parts[1]] = parts[2]
}
/^[a-z][a-z-]*:.*## / {
  target = $0; sub(/:.*/, "", target)
  text = $0; sub(/^[^#]*## /, "", text)
  reads = ""
  if (match(text, / \[[^]]*\]( \[[^]]*\])*$/)) {
    reads = substr(text, RSTART + 1); text = substr(text, 1, RSTART - 1)
  }
  printf "  make %-13s %s\n", target, text
  if (reads != "") printf "  %-18s reads %s\n", "", reads
}
END {
  if (nvars) printf "\nVariables (make TARGET NAME=value):\n"
  for (i = 1; i <= nvars; i++) {
    name = order[i]
    shown = (name in defaults) ? " (default: " defaults[name] ")" : ""
    printf "  %-15s %s%s\n", name, meaning[name], shown
  }
}

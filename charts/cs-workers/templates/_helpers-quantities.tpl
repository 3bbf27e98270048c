{{/*
Kubernetes quantities (500m, 2, 1.5, 2000000u, 1e3, 512Mi, ...) in the chart. The grammar is
values.schema.yaml's `quantity`, which helm checks before any template runs; the value of a
quantity is what the Kubernetes Python client's kubernetes.utils.parse_quantity gives, and
tests/chart/test_quantities.py renders the chart for each kind of quantity and holds it to that.
*/}}

{{/*
cs-workers.quantity.wholeUnits: the whole part of a quantity (a string, or a number as values
files give them), in decimal digits: "2000000u" -> "2", "1500m" -> "1", "0.5" -> "0",
"1e3" -> "1000", 1e+06 -> "1000000", "1.5Ki" -> "1536". Computed on the digits, exactly: Go
templates only have float64, in which 2000000u (2000000 * 1e-6) is 1.9999999999999998.

value = digits (the number's digits without its point) * 1024^binary * 10^exponent, where the
exponent is the suffix's (n -9 ... E 18, or eN) less the number of digits after the point.
*/}}
{{- define "cs-workers.quantity.wholeUnits" -}}
{{- $text := toString . | trimPrefix "+" -}}
{{- $number := regexFind "^[0-9]*([.][0-9]*)?" $text -}}
{{- $suffix := trimPrefix $number $text -}}
{{- $whole := regexFind "^[0-9]*" $number -}}
{{- $fraction := trimPrefix "." (trimPrefix $whole $number) -}}
{{- $digits := printf "%s%s" $whole $fraction -}}
{{- $exponent := sub 0 (len $fraction) | int -}}
{{- $binary := 0 -}}
{{- $binarySuffixes := dict "Ki" 1 "Mi" 2 "Gi" 3 "Ti" 4 "Pi" 5 "Ei" 6 -}}
{{- $decimalSuffixes := dict "n" -9 "u" -6 "m" -3 "" 0 "k" 3 "M" 6 "G" 9 "T" 12 "P" 15 "E" 18 -}}
{{- if hasKey $binarySuffixes $suffix -}}
{{- $binary = get $binarySuffixes $suffix -}}
{{- else if hasKey $decimalSuffixes $suffix -}}
{{- $exponent = add $exponent (get $decimalSuffixes $suffix) | int -}}
{{- else if regexMatch "^[eE][+-]?[0-9]+$" $suffix -}}
{{- $exponent = add $exponent (atoi (substr 1 (len $suffix) $suffix | trimPrefix "+")) | int -}}
{{- else -}}
{{- fail (printf "%q is not a Kubernetes quantity (use e.g. 500m, 2, 1.5, 512Mi)" $text) -}}
{{- end -}}
{{- /* digits * 1024, binary times: long multiplication, last digit first. */ -}}
{{- range until (int $binary) -}}
{{- $carry := 0 -}}
{{- $product := "" -}}
{{- range $index := untilStep (sub (len $digits) 1 | int) -1 -1 -}}
{{- $partial := add (mul (atoi (substr $index (add1 $index | int) $digits)) 1024) $carry -}}
{{- $product = printf "%d%s" (mod $partial 10) $product -}}
{{- $carry = div $partial 10 -}}
{{- end -}}
{{- $digits = printf "%s%s" (ternary (toString $carry) "" (gt (int $carry) 0)) $product -}}
{{- end -}}
{{- /* * 10^exponent: zeros appended, or the digits after the point dropped. */ -}}
{{- if ge $exponent 0 -}}
{{- $digits = printf "%s%s" $digits (repeat $exponent "0") -}}
{{- else if gt (len $digits) (sub 0 $exponent | int) -}}
{{- $digits = substr 0 (add (len $digits) $exponent | int) $digits -}}
{{- else -}}
{{- $digits = "0" -}}
{{- end -}}
{{- regexReplaceAll "^0+" $digits "" | default "0" -}}
{{- end -}}

{{/*
cs-workers.cpuToThreads: Dask's --nthreads from a CPU quantity: its whole CPUs, at least 1, so
that a fractional limit (500m, 1.5) never crashes dask-worker as it does in dask/helm-chart.
*/}}
{{- define "cs-workers.cpuToThreads" -}}
{{- $threads := include "cs-workers.quantity.wholeUnits" . -}}
{{- eq $threads "0" | ternary "1" $threads -}}
{{- end -}}

#!/bin/sh
# footprint-cert-metrics FILE.prom CERT...: the expiry of each certificate file for node-exporter's
# textfile collector (footprint_certificate_expiry_timestamp_seconds, seconds since the epoch).
# A file that is missing or unreadable is reported with footprint_certificate_readable 0.
set -eu
out=$1; shift
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  echo "# HELP footprint_certificate_expiry_timestamp_seconds When the certificate in the file expires (notAfter), seconds since the epoch."
  echo "# TYPE footprint_certificate_expiry_timestamp_seconds gauge"
  echo "# HELP footprint_certificate_readable 1 when the certificate file could be read, else 0."
  echo "# TYPE footprint_certificate_readable gauge"
  for cert in "$@"; do
    if end=$(openssl x509 -noout -enddate -in "$cert" 2>/dev/null) && at=$(date -d "${end#notAfter=}" +%s); then
      subject=$(openssl x509 -noout -subject -nameopt RFC2253 -in "$cert" | sed 's/^subject=//; s/\\/\\\\/g; s/"/\\"/g')
      echo "footprint_certificate_expiry_timestamp_seconds{path=\"$cert\",subject=\"$subject\"} $at"
      echo "footprint_certificate_readable{path=\"$cert\"} 1"
    else
      echo "footprint_certificate_readable{path=\"$cert\"} 0"
    fi
  done
} > "$tmp"
chmod 0644 "$tmp"
mv "$tmp" "$out"
trap - EXIT

#!/usr/bin/env bash
# Regenerates this test-only AMD-like PKI (never trusted outside tests): an ARK-Milan look-alike
# issuing an ASK and an ASVK (RSA-PSS SHA-384, salt 48, as AMD signs), a VLEK (P-384) issued by
# the ASVK, the same VLEK key issued by the ASK (a VLEK chained to an ASK), and CRLs by the ARK
# revoking the ASK or the ASVK. The VLEK's TCB extensions match the reported TCB of
# ../../../../../shared/fixtures/evidence/snp/report_milan.hex (bootloader 3, TEE 0, SNP 8,
# microcode 115). Needs openssl 3.
set -euo pipefail
cd "$(dirname "$0")"
pss=(-sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384)
crl_pss=(-md sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384)
dn() { echo "/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Advanced Micro Devices/CN=$1"; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cat > "$work/ca.ext" <<'X'
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
X
cat > "$work/vlek.ext" <<'X'
1.3.6.1.4.1.3704.1.3.1=DER:02:01:03
1.3.6.1.4.1.3704.1.3.2=DER:02:01:00
1.3.6.1.4.1.3704.1.3.3=DER:02:01:08
1.3.6.1.4.1.3704.1.3.8=DER:02:01:73
X
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/ark.key" 2>/dev/null
openssl req -x509 -new -key "$work/ark.key" -subj "$(dn ARK-Milan)" -days 9000 \
  -set_serial 1 "${pss[@]}" -addext "basicConstraints=critical,CA:true" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out ark.pem
for name in ask asvk; do
  cn=SEV-Milan; serial=2
  [ "$name" = asvk ] && cn=SEV-VLEK-Milan && serial=3
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/$name.key" 2>/dev/null
  openssl req -new -key "$work/$name.key" -subj "$(dn $cn)" -out "$work/$name.csr"
  openssl x509 -req -in "$work/$name.csr" -CA ark.pem -CAkey "$work/ark.key" -days 8900 \
    -set_serial $serial "${pss[@]}" -extfile "$work/ca.ext" -out $name.pem 2>/dev/null
done
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out vlek.key
openssl req -new -key vlek.key -subj "$(dn SEV-VLEK)" -out "$work/vlek.csr"
openssl x509 -req -in "$work/vlek.csr" -CA asvk.pem -CAkey "$work/asvk.key" -days 8800 \
  -set_serial 4 "${pss[@]}" -extfile "$work/vlek.ext" -outform DER -out vlek.der 2>/dev/null
openssl x509 -req -in "$work/vlek.csr" -CA ask.pem -CAkey "$work/ask.key" -days 8800 \
  -set_serial 5 "${pss[@]}" -extfile "$work/vlek.ext" -outform DER -out vlek-by-ask.der 2>/dev/null
for revoke in ask asvk; do
  mkdir -p "$work/db-$revoke"; : > "$work/db-$revoke/index.txt"; echo 01 > "$work/db-$revoke/crlnumber"
  cat > "$work/db-$revoke/ca.cnf" <<X
[ca]
default_ca=d
[d]
database=$work/db-$revoke/index.txt
crlnumber=$work/db-$revoke/crlnumber
default_md=sha384
default_crl_days=8000
X
  openssl ca -config "$work/db-$revoke/ca.cnf" -keyfile "$work/ark.key" -cert ark.pem \
    -revoke $revoke.pem 2>/dev/null
  openssl ca -config "$work/db-$revoke/ca.cnf" -keyfile "$work/ark.key" -cert ark.pem -gencrl \
    "${crl_pss[@]}" -out "$work/crl.pem" 2>/dev/null
  openssl crl -in "$work/crl.pem" -outform DER -out crl-revoking-$revoke.der
done
# A CRL revoking nothing.
mkdir -p "$work/db-none"; : > "$work/db-none/index.txt"; echo 01 > "$work/db-none/crlnumber"
sed "s|db-asvk|db-none|g" "$work/db-asvk/ca.cnf" > "$work/db-none/ca.cnf"
openssl ca -config "$work/db-none/ca.cnf" -keyfile "$work/ark.key" -cert ark.pem -gencrl \
  "${crl_pss[@]}" -out "$work/crl.pem" 2>/dev/null
openssl crl -in "$work/crl.pem" -outform DER -out crl-empty.der

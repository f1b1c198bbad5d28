/* What the project binds beyond xenctrl-sys (which covers xenctrl.h alone). Debian 12's
 * libxen-dev 4.17 headers. The compat map API lives in xenctrl_compat.h behind this macro. */
#define XC_WANT_COMPAT_MAP_FOREIGN_API 1
#include <xenctrl.h>
#include <xenguest.h>
#include <xencall.h>
#include <xenstore.h>

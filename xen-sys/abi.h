/* Xen's guest ABI structures the builders write into guests, for layout-tested bindings
 * (xen_sys::abi). Debian 12's libxen-dev 4.17 headers; foreign/x86_64.h spells the x86_64
 * PV structures (start_info, shared_info, vcpu_info, vcpu_guest_context) out for any host. */
/* As xenctrl.h does: the latest interface version (vcpu_time_info has its `flags` byte). */
#define __XEN_TOOLS__ 1
#include <stdint.h>
#include <xen/xen.h>
#include <xen/hvm/hvm_info_table.h>
#include <xen/arch-x86/hvm/start_info.h>
#include <xen/foreign/x86_64.h>

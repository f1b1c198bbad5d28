(** In-process domain builds for xenopsd.

    The same builds as the [xenguest] binary (the Rust core behind it), called from OCaml
    without fork/exec. A build releases the OCaml runtime lock for its whole duration, so
    other OCaml threads run, and builds of different domains proceed in parallel. Errors
    raise {!Error}; a Rust panic is caught and raised as {!Error} with step ["panic"];
    nothing aborts or exits the process. *)

type domid = int

(** Why a build (or another call) failed. [message] is exactly the text the binary writes
    after [error:] on its control fd, e.g.
    ["xenguest: hvm_build_setup_mem: [12] Could not allocate memory for guest: ..."];
    [code] is the errno or xc error code (0 for the C texts that carry none). *)
exception Error of { step : string; code : int; message : string }

(** A build stopped because its {!cancel} token was set. [step] is where it stopped;
    [message] is the binary-style text, e.g.
    ["xenguest: hvm_build_setup_mem: [125] build cancelled"]. The domain is left as a failed
    build leaves it: its claim released, nothing the toolstack's destroy does not undo. *)
exception Cancelled of { step : string; message : string }

(** A connection to a hypervisor and its xenstore: the real host or a simulated one. It is
    a custom block: the garbage collector closes it; {!close} is idempotent. *)
type handle

val interface_open : unit -> handle
(** The real Xen host: a libxenctrl handle and a xenstored connection ([XENSTORED_PATH] or
    the default socket), shared by the handle's builds.
    @raise Error with step ["xc_interface_open"] ([Failed to open xc interface]) or
    ["xs_open"] when either cannot be opened, e.g. on a machine without Xen. *)

val close : handle -> unit
(** Release the backend now. Closing twice is harmless; using a closed handle raises
    {!Error}. *)

(** A cancellation token, to stop a build from another thread (xenopsd's task cancel). A
    build given one stops at its next check point once it is set: before every hypervisor
    call and xenstore operation, and every 64 KiB of a kernel's decompression. One call in
    flight finishes first; a populate call asks for at most 1 GiB of guest memory, so this
    is bounded. *)
type cancel

val cancel_token : unit -> cancel
(** A token not yet set. *)

val cancel : cancel -> unit
(** Set the token: every build using it raises {!Cancelled} at its next check point, and
    builds started with it later raise it at once. Safe from any thread, at any time. *)

val is_cancelled : cancel -> bool

(** A log line's level: the builder's [error], [warn] and [info] records (C xenguest's
    [xg_err] and [xg_info]); debug lines are not collected. *)
type level = [ `Error | `Warning | `Info ]

(** Where a build's log lines go: the lines the binary sends to syslog, e.g.
    ["domid = 7; Determined the following parameters from xenstore (HVM):"]. They are
    collected per build (builds on other threads keep theirs) and passed to it in order
    when the build returns, before its result or exception; at most 10 000, then one
    [`Warning] line counting the rest. An exception raised by it propagates (the build's
    own outcome is then lost), so it should not raise. Without one the lines are dropped. *)
type log = level -> string -> unit

(** What a build returns: the xenstore and console rings (guest frame numbers for HVM and
    PVH, machine frames for PV) and, for PV, the guest ABI. *)
type built = { store_mfn : nativeint; console_mfn : nativeint; protocol : string option }

(** What a build did. *)
type report = {
  pages_by_order : (int * int) list;  (** extent order (0, 9, 18) and 4 KiB pages populated *)
  pages_by_node : int list option;  (** pages owned per NUMA node, when the host can tell *)
  hypercalls : (string * int) list;  (** calls made, per kind *)
  populate_calls : int;  (** [populate_physmap] calls among them *)
  xenstore_writes : (string * string) list;  (** in order *)
  elapsed_us : int;  (** wall time of the build, split into the four below *)
  hypervisor_us : int;  (** inside hypervisor calls *)
  xenstore_us : int;  (** inside xenstore operations *)
  images_us : int;  (** reading, unpacking and parsing images (kernel, firmware, modules) *)
  own_us : int;  (** the rest: the builder's own work *)
}

(** The arguments xenopsd passes to the binary. [modules] pairs each PVH module with its
    command line. [pci_passthrough] lists [SSSS:BB:DD.F] or [BB:DD.F] (segment 0), as [-pci_passthrough] takes. *)
type build_args = {
  domid : domid;
  mem_max_mib : int;
  mem_start_mib : int;
  image : string;
  cmdline : string;
  ramdisk : string option;
  modules : (string * string) list;
  features : string;
  flags : int;
  store_port : int;
  store_domid : domid;
  console_port : int;
  console_domid : domid;
  vgpu : bool;
  pci_passthrough : string list;
  mem_pnode : int option;
  force : bool;
}

val args :
  domid:domid -> mem_max_mib:int -> mem_start_mib:int -> image:string -> store_port:int ->
  console_port:int -> build_args
(** [build_args] with xenopsd's values for everything else (store and console domid 0,
    no cmdline, modules, ramdisk, vGPU, passthrough or node; not forced). *)

val hvm_build : ?cancel:cancel -> ?log:log -> handle -> build_args -> built * report
(** [-mode hvm_build]: hvmloader as [image]. *)

val pvh_build : ?cancel:cancel -> ?log:log -> handle -> build_args -> built * report
(** [-mode pvh_build]: a PVH kernel or the xen-shim as [image]. *)

val pv_build : ?cancel:cancel -> ?log:log -> handle -> build_args -> built * report
(** [-mode linux_build]: a PV kernel as [image]. *)

val build_of_argv : ?cancel:cancel -> ?log:log -> handle -> string list -> built * report
(** The build xenopsd's argv for the binary asks for (without the program name), e.g.
    [["-controloutfd"; "5"; "-mode"; "hvm_build"; "-image"; hvmloader; "-domid"; "7"; ...]],
    parsed by the binary's own parser: the same options, prefixes and [-opt=value] forms,
    [-pci_passthrough SSSS:BB:DD.F,BB:DD.F], [-module] with and without its [-cmdline].
    The result, or the {!Error} [message], is what the binary would write after [result:]
    or [error:] on its control fd for that argv. Options that only steer the binary's
    process (control fds, [-debuglog], [-stderr], [-report], [-summary]) have no effect;
    [-sim] and [-sim-key] raise {!Error} (the handle is the host), as does [-supports].
    @raise Error for a command-line error with the binary's text and step
    ["parse_options"], e.g. ["xenguest: missing command line options"]. *)

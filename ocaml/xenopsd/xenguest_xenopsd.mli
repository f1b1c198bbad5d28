(** xenopsd's side of a domain build: what [Domain.build] gets from the [xenguest] helper,
    in-process through {!Xenguest} or, when the VM's platform names its own [xenguest],
    by fork/exec of that binary.

    xenopsd (xapi-project/xen-api at e2ee48d6) builds a domain in [ocaml/xenopsd/xc/domain.ml]
    (lines 1260-1352): it makes the binary's argv ([xenguest_args_hvm], [_pv], [_pvh], then
    [--force] and the [-pci_passthrough] extras), runs the binary through
    [XenguestHelper.with_connection ... receive_success] and splits the [result:] line into
    two [Nativeint.of_string] frames. {!build} takes that same argv and returns the same
    pair, or raises what xenopsd raises: an [error:] text goes through the mapping of
    [XenguestHelper.receive_success] ([ocaml/xenopsd/xc/xenguestHelper.ml] lines 234-268), so
    the binary's texts (["xenguest: <step>: [<errno>] <what>"]) become
    [Failure ("Error from xenguesthelper: " ^ text)], on both paths.

    Cancellation: xenopsd kills the helper's pid when the task is cancelled; an in-process
    build cannot be killed, so {!build} takes a {!Xenguest.cancel} token instead, which
    xenopsd sets from the same hook ([Xenops_task.with_cancel task (fun () -> Xenguest.cancel
    c) (fun () -> build ~cancel:c ...)]); the build then raises {!Xenguest.Cancelled} and
    xenopsd's [Xenops_task.check_cancelling task] turns that into its [Cancelled] error.

    Logging: [?log] gets the lines xenopsd logs with [debug] from the helper, on both paths:
    the exec path's [stdout:], [stderr:] and [info:] lines, and the in-process build's own
    log lines (what the binary sends to syslog), each build's only, when it returns.

    What is not here: the memory statistics xenopsd logs when a build fails. *)

(** {2 xenopsd's exceptions}

    [XenguestHelper.receive_success] maps an [error:] text whose first word is a libxc or
    builder function name to one of these; they live in xenopsd, so they are defined
    again here with the same arguments. The texts our binary and {!Xenguest} give start
    with ["xenguest:"] and so never match: they become [Failure]. *)

exception Domain_builder_error of string * int * string
(** xenopsd's [XenguestHelper.Domain_builder_error]: function name ([hvm_build],
    [hvm_build_params], [hvm_build_mem]), code, message. *)

exception Xenctrl_dom_allocate_failure of int * string
(** xenopsd's [XenguestHelper.Xenctrl_dom_allocate_failure]. *)

exception Xenctrl_dom_linux_build_failure of int * string
(** xenopsd's [XenguestHelper.Xenctrl_dom_linux_build_failure]. *)

exception Xenctrl_domain_save_failure of int * string
(** xenopsd's [XenguestHelper.Xenctrl_domain_save_failure]. *)

exception Xenctrl_domain_resume_failure of int * string
(** xenopsd's [XenguestHelper.Xenctrl_domain_resume_failure]. *)

exception Xenctrl_domain_restore_failure of int * string
(** xenopsd's [XenguestHelper.Xenctrl_domain_restore_failure]. *)

exception Domain_build_failed
(** xenopsd's [Domain.Domain_build_failed]: a [result:] line with fewer than two words. *)

val raise_of_error : string -> 'a
(** Raise what xenopsd raises for [error:text]: [text] split on spaces; a first word
    [hvm_build], [hvm_build_params] or [hvm_build_mem] raises {!Domain_builder_error},
    [xc_dom_allocate], [xc_dom_linux_build], [xc_domain_save], [xc_domain_resume],
    [xc_domain_restore] their exception (the second word through [int_of_string], which
    raises [Failure "int_of_string"] when it is not a number; the rest joined by spaces);
    anything else [Failure ("Error from xenguesthelper: " ^ text)]. *)

(** {2 Builds} *)

val build :
  ?xenguest:string -> ?log:(string -> unit) -> ?cancel:Xenguest.cancel -> Xenguest.handle ->
  string list -> nativeint * nativeint
(** [build ?xenguest handle argv]: the domain build xenopsd's [argv] for the binary asks
    for (without the program name and without control fds, as [Domain.build] makes it:
    [ocaml/xenopsd/xc/domain.ml] lines 1260-1336 and 1440-1503),
    and its [(store_mfn, console_mfn)].

    Without [xenguest], in-process on [handle] through {!Xenguest.build_of_argv} (the
    binary's own argv parser); an {!Xenguest.Error} goes through {!raise_of_error} with its
    [message]. With [xenguest] (xenopsd: the VM's [platform:xenguest] names a file in
    [Xc_resources.alternatives/xenguest], see [choose_alternative] in
    [ocaml/xenopsd/xc/xenops_server_xen.ml] lines 64-92), {!exec} of that binary; [handle]
    is not used. [log] (default: ignore) gets the text of the [stdout:], [stderr:] and
    [info:] lines of the exec path, or the in-process build's log lines. [cancel] stops
    the in-process path (see above); the exec path ignores it, as xenopsd stops the binary
    by killing it.

    @raise Failure ["Error from xenguesthelper: " ^ text] for a failed build.
    @raise Xenguest.Cancelled when [cancel] was set during an in-process build. *)

val build_in_process :
  ?log:(string -> unit) -> ?cancel:Xenguest.cancel -> Xenguest.handle -> string list ->
  nativeint * nativeint
(** The in-process path of {!build}. *)

val exec : ?log:(string -> unit) -> string -> string list -> nativeint * nativeint
(** [exec path argv]: the fork/exec path of {!build}, as [XenguestHelper.connect] and
    [receive_success] do it ([ocaml/xenopsd/xc/xenguestHelper.ml] lines 52-87,
    158-268): [path] runs with [-controloutfd N -controlinfd M] then [argv]
    (N and M the child's ends of two pipes; stdin, stdout and stderr [/dev/null]; the
    caller's descriptors reach the child unless they are close-on-exec, this function's
    own are). The control lines
    are read until one is not [stdout:], [stderr:] or [info:] (those go to [log]):
    - [result:S C ...] returns [(Nativeint.of_string S, Nativeint.of_string C)]; fewer
      than two words raises {!Domain_build_failed};
    - [error:text] raises {!raise_of_error} [text];
    - [suspend:] raises [Failure "xenguesthelper protocol failure; not expecting Suspend"];
    - another prefix is xenopsd's [Error "uncaught exception"]:
      [Failure "Error from xenguesthelper: uncaught exception"];
    - a line without [:] raises
      [Failure "Failed to parse message from xenguesthelper [line]"];
    - end of file (the child exited without a line, or [path] could not be executed)
      raises [End_of_file].
    The child is reaped whatever happens; its exit status is not looked at (xenopsd
    ignores it too). *)

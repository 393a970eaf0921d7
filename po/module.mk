# po/: the message catalogues of pop3d's responses (pop3d/lang.c reads
# the compiled ones; docs/pop3d.md, "Languages", says how to add one).
#
#   make pot        regenerates po/pop3d.pot from the sources and merges
#                   it into every po/LL.po (msgmerge)
#   make programs   compiles each po/LL.po (msgfmt --check) into
#                   build/locale/LL/LC_MESSAGES/pop3d.mo
#   make install    installs those under $(LOCALEDIR)
#
# A response text is marked where it is translated: tr(c, "...") in
# login.c and session.c, lang_tr(l, "...") elsewhere, N_("...") where
# the language is not known yet.  Test and fuzz files are not scanned.
POT_SRCS := $(filter-out pop3d/test-% pop3d/fuzz-%,$(wildcard pop3d/*.c))
XGETTEXT_FLAGS := --language=C --from-code=UTF-8 -k -ktr:2 -klang_tr:2 -kN_ \
	--add-comments=TRANSLATORS: --add-location=file --sort-by-file \
	--package-name=pop3d --msgid-bugs-address=https://github.com/ --foreign-user
PO_LANGS := $(basename $(notdir $(wildcard po/*.po)))
MO_FILES := $(PO_LANGS:%=$(B)/locale/%/LC_MESSAGES/pop3d.mo)

programs: $(MO_FILES)

$(B)/locale/%/LC_MESSAGES/pop3d.mo: po/%.po
	@mkdir -p $(dir $@)
	msgfmt --check -o $@ $<

pot:
	xgettext $(XGETTEXT_FLAGS) -o po/pop3d.pot $(POT_SRCS)
	for p in $(wildcard po/*.po); do msgmerge --quiet --update --backup=none $$p po/pop3d.pot; done

# The template as the sources have it now, into POT (the test that
# po/pop3d.pot is current compares the two: tests/integration/test_po.py).
pot-file:
	xgettext $(XGETTEXT_FLAGS) -o $(POT) $(POT_SRCS)

.PHONY: pot pot-file

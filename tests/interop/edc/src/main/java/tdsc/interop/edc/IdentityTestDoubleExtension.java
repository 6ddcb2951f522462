/*
 * TEST DOUBLE for the interop suite (tests/interop/): stands in for Eclipse IdentityHub beside a
 * stock EDC 0.15.1 runtime. EDC 0.15.1 ships no STS on Maven Central (its remote STS client,
 * decentralized-claims-sts-remote-client, is not published), so this extension, in the same JVM:
 *   (a) implements EDC's SecureTokenService: self-issued ID tokens (EdDSA, iss = sub = our DID)
 *       carrying the DCP `token` claim, an access token for our credential service;
 *   (b) serves our did:web DID document over http on loopback (verification method, a
 *       CredentialService and a DataService entry);
 *   (c) serves a DCP 1.0 credential service, POST /cs/presentations/query, answering with a JWT
 *       VP of the credentials the runner obtained for us from the project's authority;
 *   (d) asks EDC for the MembershipCredential on every DSP request (the scope EDC needs before
 *       it will mint a token at all) and seeds the in-memory vault with the data-plane key.
 * Not production code: no key rotation, no persistence, one participant per runtime; the
 * credential service checks that the nested access token is ours, unexpired and addressed to the
 * caller's `iss`, but does not resolve the caller's DID to verify the outer token's signature.
 */
package tdsc.interop.edc;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.crypto.Ed25519Signer;
import com.nimbusds.jose.crypto.Ed25519Verifier;
import com.nimbusds.jose.jwk.OctetKeyPair;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import org.eclipse.edc.iam.decentralizedclaims.spi.SecureTokenService;
import org.eclipse.edc.policy.context.request.spi.RequestCatalogPolicyContext;
import org.eclipse.edc.policy.context.request.spi.RequestContractNegotiationPolicyContext;
import org.eclipse.edc.policy.context.request.spi.RequestPolicyContext;
import org.eclipse.edc.policy.context.request.spi.RequestTransferProcessPolicyContext;
import org.eclipse.edc.policy.engine.spi.PolicyEngine;
import org.eclipse.edc.runtime.metamodel.annotation.Extension;
import org.eclipse.edc.runtime.metamodel.annotation.Inject;
import org.eclipse.edc.runtime.metamodel.annotation.Provider;
import org.eclipse.edc.spi.iam.TokenRepresentation;
import org.eclipse.edc.spi.monitor.Monitor;
import org.eclipse.edc.spi.result.Result;
import org.eclipse.edc.spi.security.Vault;
import org.eclipse.edc.spi.system.ServiceExtension;
import org.eclipse.edc.spi.system.ServiceExtensionContext;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.ParseException;
import java.time.Instant;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

@Extension(IdentityTestDoubleExtension.NAME)
public class IdentityTestDoubleExtension implements ServiceExtension {

    public static final String NAME = "Interop identity test double (STS, DID document, credential service)";
    private static final String DCP_CONTEXT = "https://w3id.org/dspace-dcp/v1.0/dcp.jsonld";
    private static final String VC_CONTEXT = "https://www.w3.org/2018/credentials/v1";
    private static final String MEMBERSHIP_SCOPE = "org.eclipse.edc.vc.type:MembershipCredential:read";
    private static final String CS_PATH = "/cs";
    private static final long TOKEN_SECONDS = 300;

    @Inject
    private PolicyEngine policyEngine;
    @Inject
    private Vault vault;
    @Inject
    private Monitor monitor;

    private final ObjectMapper json = new ObjectMapper();
    private String did;
    private String kid;
    private OctetKeyPair key;
    private Path credentialsFile;
    private String dspUrl;
    private int port;
    private HttpServer server;

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public void initialize(ServiceExtensionContext context) {
        var config = context.getConfig();
        did = config.getString("edc.iam.issuer.id");
        kid = did + "#key-1";
        port = config.getInteger("interop.identity.port");
        credentialsFile = Path.of(config.getString("interop.credentials.file"));
        dspUrl = config.getString("interop.dsp.url");
        try {
            key = OctetKeyPair.parse(Files.readString(Path.of(config.getString("interop.key.file"))));
        } catch (IOException | ParseException e) {
            throw new IllegalStateException("cannot read the participant key (interop.key.file)", e);
        }
        // the embedded data plane signs and verifies its access tokens with these aliases
        vault.storeSecret("interop-key", key.toJSONString());
        vault.storeSecret("interop-key-public", key.toPublicJWK().toJSONString());
        // EDC mints no token without a scope: always ask for the membership credential
        addScope(RequestCatalogPolicyContext.class);
        addScope(RequestContractNegotiationPolicyContext.class);
        addScope(RequestTransferProcessPolicyContext.class);
    }

    private <C extends RequestPolicyContext> void addScope(Class<C> type) {
        policyEngine.registerPreValidator(type, (policy, ctx) -> {
            ctx.requestScopeBuilder().scope(MEMBERSHIP_SCOPE);
            return true;
        });
    }

    @Override
    public void start() {
        try {
            server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 16);
        } catch (IOException e) {
            throw new IllegalStateException("cannot listen on 127.0.0.1:" + port, e);
        }
        server.createContext("/.well-known/did.json", this::didDocument);
        server.createContext(CS_PATH + "/presentations/query", this::presentationQuery);
        server.start();
        monitor.info("identity test double for %s on 127.0.0.1:%d".formatted(did, port));
    }

    @Override
    public void shutdown() {
        if (server != null) {
            server.stop(0);
        }
    }

    // (a) STS -------------------------------------------------------------------------------

    @Provider
    public SecureTokenService secureTokenService() {
        return this::createToken;
    }

    private Result<TokenRepresentation> createToken(String participantContextId, Map<String, Object> claims,
                                                    String bearerAccessScope) {
        var now = Instant.now();
        var builder = new JWTClaimsSet.Builder()
                .issuer(did).subject(did)
                .jwtID(UUID.randomUUID().toString())
                .issueTime(Date.from(now))
                .expirationTime(Date.from(now.plusSeconds(TOKEN_SECONDS)));
        claims.forEach((name, value) -> {
            switch (name) {
                case "iat", "exp", "nbf" -> builder.claim(name, Date.from(Instant.ofEpochSecond(Long.parseLong(value.toString()))));
                default -> builder.claim(name, value);
            }
        });
        var audience = claims.get("aud");
        if (bearerAccessScope != null && audience != null) {
            // DCP: the verifier presents this back to our credential service
            var access = new JWTClaimsSet.Builder()
                    .issuer(did).subject(did).audience(audience.toString())
                    .jwtID(UUID.randomUUID().toString())
                    .issueTime(Date.from(now))
                    .expirationTime(Date.from(now.plusSeconds(TOKEN_SECONDS)))
                    .claim("scope", bearerAccessScope)
                    .build();
            builder.claim("token", sign(access));
        }
        return Result.success(TokenRepresentation.Builder.newInstance().token(sign(builder.build())).build());
    }

    private String sign(JWTClaimsSet claims) {
        var jwt = new SignedJWT(new JWSHeader.Builder(JWSAlgorithm.EdDSA).keyID(kid).build(), claims);
        try {
            jwt.sign(new Ed25519Signer(key));
        } catch (JOSEException e) {
            throw new IllegalStateException(e);
        }
        return jwt.serialize();
    }

    // (b) DID document ----------------------------------------------------------------------

    private void didDocument(HttpExchange exchange) throws IOException {
        if (!"GET".equals(exchange.getRequestMethod())) {
            reply(exchange, 405, Map.of("error", "GET only"));
            return;
        }
        var doc = new LinkedHashMap<String, Object>();
        doc.put("@context", List.of("https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"));
        doc.put("id", did);
        doc.put("verificationMethod", List.of(Map.of(
                "id", kid, "type", "JsonWebKey2020", "controller", did,
                "publicKeyJwk", key.toPublicJWK().toJSONObject())));
        doc.put("authentication", List.of(kid));
        doc.put("assertionMethod", List.of(kid));
        doc.put("capabilityInvocation", List.of(kid));
        doc.put("service", List.of(
                Map.of("id", did + "#credential-service", "type", "CredentialService",
                        "serviceEndpoint", "http://127.0.0.1:%d%s".formatted(port, CS_PATH)),
                Map.of("id", did + "#dsp", "type", "DataService", "serviceEndpoint", dspUrl)));
        reply(exchange, 200, doc);
    }

    // (c) credential service ----------------------------------------------------------------

    private void presentationQuery(HttpExchange exchange) throws IOException {
        exchange.getRequestBody().readAllBytes();
        if (!"POST".equals(exchange.getRequestMethod())) {
            reply(exchange, 405, Map.of("error", "POST only"));
            return;
        }
        var header = exchange.getRequestHeaders().getFirst("Authorization");
        if (header == null || !header.startsWith("Bearer ")) {
            reply(exchange, 401, Map.of("error", "DCP 1.0: Authorization must be 'Bearer <the verifier's"
                    + " self-issued ID token>'"));
            return;
        }
        String verifier;
        try {
            // the verifier's SI token wraps the access token we minted; it must be ours, unexpired,
            // and addressed to the verifier that presents it
            var outer = SignedJWT.parse(header.substring(7).trim());
            verifier = outer.getJWTClaimsSet().getIssuer();
            var nested = outer.getJWTClaimsSet().getStringClaim("token");
            if (nested == null) {
                reply(exchange, 401, Map.of("error", "DCP 1.0: the Bearer token must be the verifier's"
                        + " self-issued ID token with our access token in its `token` claim; it has no"
                        + " `token` claim (iss " + verifier + ")"));
                return;
            }
            var inner = SignedJWT.parse(nested);
            var claims = inner.getJWTClaimsSet();
            if (!inner.verify(new Ed25519Verifier(key.toPublicJWK()))
                    || claims.getExpirationTime().before(new Date())
                    || !claims.getAudience().contains(verifier)) {
                reply(exchange, 401, Map.of("error", "access token is not valid for " + verifier));
                return;
            }
        } catch (ParseException | JOSEException | RuntimeException e) {
            reply(exchange, 401, Map.of("error", "unreadable token: " + e.getMessage()));
            return;
        }
        var credentials = Files.exists(credentialsFile)
                ? Files.readAllLines(credentialsFile, StandardCharsets.UTF_8).stream().filter(s -> !s.isBlank()).toList()
                : List.<String>of();
        var now = Instant.now();
        var vp = new JWTClaimsSet.Builder()
                .issuer(did).subject(did).audience(verifier)
                .jwtID(UUID.randomUUID().toString())
                .issueTime(Date.from(now)).notBeforeTime(Date.from(now))
                .expirationTime(Date.from(now.plusSeconds(120)))
                .claim("vp", Map.of("@context", List.of(VC_CONTEXT),
                        "type", List.of("VerifiablePresentation"),
                        "holder", did,
                        "verifiableCredential", credentials))
                .build();
        reply(exchange, 200, Map.of("@context", List.of(DCP_CONTEXT),
                "type", "PresentationResponseMessage",
                "presentation", List.of(sign(vp))));
    }

    private void reply(HttpExchange exchange, int status, Object body) throws IOException {
        if (status >= 400) {
            // the runner quotes these lines as evidence of why a verifier got no presentation
            monitor.warning("[identity test double] %s %s -> %d %s".formatted(
                    exchange.getRequestMethod(), exchange.getRequestURI(), status, body));
        }
        var bytes = json.writeValueAsBytes(body);
        exchange.getResponseHeaders().set("Content-Type", "application/json");
        exchange.sendResponseHeaders(status, bytes.length);
        try (var out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }
}
